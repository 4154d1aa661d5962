"""Growth experiments: init-with against a random init, and the loss jump of insert-layer per init.

    python experiments/growth/run.py            # the full run (a few minutes on 2 cores): results.json, README.md
    python experiments/growth/run.py --smoke    # a seconds-long check of the script; writes to a temp dir
    python experiments/growth/run.py --readme-only   # README.md again from results.json

(1) init-with. A parent (ascii tokenizer) is trained on simple_dummy text. Children for a byte-level BPE
    trained on the same text are trained the same number of steps on the same batches: a random init,
    init-with (the reference: fresh embeddings and head), and init-with --keep-shared-tokens. The
    validation loss (the last 10% of the text, in the child's tokens) is recorded along the way.
(2) insert-layer. For every insertion index and several parents, the validation loss right after the
    insertion for each init; then, for two indices, M more training steps for each init and optimizer
    treatment, next to the parent simply trained on (no insertion).
Everything is seeded: the same command gives the same numbers. Numba runs single-threaded by default:
the kernels give the same bits at any thread count, and for models this small one thread is fastest
(on a shared machine, more threads than free cores slow the steps down many times).
"""
import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from femtogpt.config import Hyperparameters, OptimizerConfig  # noqa: E402
from femtogpt.tasks.toy_data import generate_text  # noqa: E402
from femtogpt.train.evaluate import evaluate_tokens  # noqa: E402
from femtogpt.io.checkpoint import create, from_model_file  # noqa: E402
from femtogpt.engine.params import named_views  # noqa: E402
from femtogpt.growth.surgery import init_with, insert_layer, layer_names, rename_layer  # noqa: E402
from femtogpt.text.tokenizer import build_tokenizer, train_bpe  # noqa: E402
from femtogpt.train.step import sample_batch, train_step  # noqa: E402

HERE = Path(__file__).resolve().parent
FULL = dict(words=8000, E=48, L=3, H=4, T=24, batch=32, parent_steps=1000, seeds=[0, 1, 2],
            bpe_vocab=320, child_steps=250, child_evals=[0, 10, 25, 50, 100, 250],
            after_steps=200, after_evals=[0, 10, 50, 100, 200], after_positions=[1, 3])
SMOKE = dict(words=600, E=16, L=2, H=2, T=8, batch=8, parent_steps=20, seeds=[0],
             bpe_vocab=270, child_steps=6, child_evals=[0, 3, 6],
             after_steps=4, after_evals=[0, 2, 4], after_positions=[1])
CONFIG = OptimizerConfig()  # the reference schedule: lr 1e-3, warm-up 100 steps from 0
JUMP_INITS = ("random", "near-identity", "near-identity, LN copied from a neighbour",
              "LN gains 1, proj/ff2 random")
ARMS = (("no insertion (train on)", None, False), ("random + reset optimizer (the reference)", "random", True),
        ("random, optimizer kept", "random", False), ("near-identity, optimizer kept (default)", "near-identity", False),
        ("near-identity, kept, new layer's v from its neighbour", "near-identity, v from a neighbour", False),
        ("near-identity + reset optimizer", "near-identity", True))


def split(tokens):
    cut = int(len(tokens) * 0.9)
    return tokens[:cut], tokens[cut:]


def val_loss(session, val):
    return evaluate_tokens(session.model, val)[0]


def train(session, tokens, steps, seed, val, evals, batch):
    """Train `steps` steps on batches keyed by (seed, i), so every arm sees the same data. Returns
    ({steps done: validation loss} at `evals`, [training losses])."""
    opt = session.ensure_optimizer(CONFIG)
    T, out, losses = session.hp.num_tokens, {}, []
    for i in range(steps + 1):
        if i in evals:
            out[i] = val_loss(session, val)
        if i == steps:
            break
        x, y = sample_batch(tokens, batch, T, seed, 1_000_000 + i)
        losses.append(train_step(session.model, opt, x, y)[0])
    return out, losses


def clone(session):
    return from_model_file(session.to_model_file())


def _neighbour(k, L):
    """In the grown model: the old layer that now follows the new layer k, or precedes it when appended."""
    return k + 1 if k < L else k - 1


def make_variant(parent, k, kind, seed, reset=False):
    """The parent with a layer inserted at k, initialised as `kind` (see JUMP_INITS)."""
    if kind in ("random", "near-identity"):
        return insert_layer(parent, k, init=kind, seed=seed, reset_optimizer=reset)[0]
    if kind == "near-identity, v from a neighbour":  # an alternative to zero moments for the new layer
        grown = insert_layer(parent, k, init="near-identity", seed=seed, reset_optimizer=reset)[0]
        v = named_views(grown.hp, grown.optimizer.v)
        for name in layer_names(grown.hp, k):
            v[name][...] = v[rename_layer(name, _neighbour(k, parent.hp.num_layers))]
        return grown
    if kind == "near-identity, LN copied from a neighbour":
        grown = insert_layer(parent, k, init="near-identity", seed=seed, reset_optimizer=reset)[0]
        p = grown.model.params.named()
        src = _neighbour(k, parent.hp.num_layers)
        for part in ("norm", "atten_norm"):
            for what in ("coeff", "bias"):
                p[f"{part}_{k}_{what}"][...] = p[f"{part}_{src}_{what}"]
        return grown
    if kind == "LN gains 1, proj/ff2 random":
        grown = insert_layer(parent, k, init="random", seed=seed, reset_optimizer=reset)[0]
        p = grown.model.params.named()
        for part in ("norm", "atten_norm"):
            p[f"{part}_{k}_coeff"][...] = 1.0
            p[f"{part}_{k}_bias"][...] = 0.0
        return grown
    raise ValueError(kind)


def experiment(cfg, log):
    t_start = time.time()
    text = generate_text("simple_dummy", cfg["words"], seed=1234)
    ascii_tok = build_tokenizer("ascii")
    bpe_tok, _ = train_bpe(text, cfg["bpe_vocab"])
    p_train, p_val = split(ascii_tok.encode(text))
    c_train, c_val = split(bpe_tok.encode(text))
    hp = Hyperparameters(vocab_size=ascii_tok.vocab_size, num_tokens=cfg["T"], embedding_degree=cfg["E"],
                         num_layers=cfg["L"], num_heads=cfg["H"], pos_enc="none")
    results = {"config": {**cfg, "optimizer": vars(CONFIG), "dataset": "simple_dummy, seed 1234",
                          "parent_tokenizer": ascii_tok.summary(), "child_tokenizer": bpe_tok.summary(),
                          "numba_threads": os.environ.get("NUMBA_NUM_THREADS")},
               "parents": [], "init_with": [], "insert_jump": [], "insert_after": []}

    parents = {}
    for seed in cfg["seeds"]:
        parent = create(hp, ascii_tok, seed=seed)
        evals, losses = train(parent, p_train, cfg["parent_steps"], seed, p_val, {cfg["parent_steps"]}, cfg["batch"])
        parents[seed] = parent
        results["parents"].append({"seed": seed, "steps": cfg["parent_steps"], "val_loss": evals[cfg["parent_steps"]],
                                   "last_train_loss": losses[-1]})
        log(f"parent seed {seed}: {cfg['parent_steps']} steps, val loss {evals[cfg['parent_steps']]:.4f}")

    # (1) init-with against random, on the parent's data in the child's tokens
    for seed in cfg["seeds"]:
        parent = parents[seed]
        arms = {"random init": create(replace(hp, vocab_size=bpe_tok.vocab_size), bpe_tok, seed=100 + seed),
                "init-with": init_with(parent, bpe_tok, seed=100 + seed)[0],
                "init-with --keep-shared-tokens": init_with(parent, bpe_tok, seed=100 + seed,
                                                            keep_shared_tokens=True)[0]}
        for name, child in arms.items():
            evals, losses = train(child, c_train, cfg["child_steps"], 100 + seed, c_val, set(cfg["child_evals"]),
                                  cfg["batch"])
            results["init_with"].append({"seed": seed, "arm": name, "val_loss": evals,
                                         "train_loss_first": losses[0], "train_loss_last": losses[-1]})
            log(f"init-with seed {seed} {name}: " + ", ".join(f"{k}:{v:.3f}" for k, v in evals.items()))

    # (2a) the loss right after insertion, every index, every parent
    for seed in cfg["seeds"]:
        parent = parents[seed]
        base = val_loss(parent, p_val)
        for k in range(cfg["L"] + 1):
            for kind in JUMP_INITS:
                after = val_loss(make_variant(parent, k, kind, seed=200 + seed), p_val)
                results["insert_jump"].append({"seed": seed, "index": k, "init": kind, "before": base,
                                               "after": after, "jump": after - base})
        log(f"insert jump seed {seed} done")

    # (2b) training on after the insertion
    parent = parents[cfg["seeds"][0]]
    for k in cfg["after_positions"]:
        for name, kind, reset in ARMS:
            model = clone(parent) if kind is None else make_variant(parent, k, kind, seed=300, reset=reset)
            evals, losses = train(model, p_train, cfg["after_steps"], 300, p_val, set(cfg["after_evals"]), cfg["batch"])
            results["insert_after"].append({"index": k, "arm": name, "val_loss": evals,
                                            "train_loss_first_step": losses[0]})
            log(f"after insert at {k}, {name}: " + ", ".join(f"{s}:{v:.3f}" for s, v in evals.items()))
    results["seconds"] = round(time.time() - t_start, 1)
    return results


# ------------------------------------------------------------------------------------ report

def _mean(xs):
    return float(np.mean(xs))


def readme(r):
    cfg = r["config"]
    seeds, last, mid = cfg["seeds"], cfg["child_steps"], len(cfg["child_evals"]) // 2
    parents = ", ".join(f"{p['val_loss']:.3f}" for p in r["parents"])
    child = {arm: [_mean([e["val_loss"][s] for e in r["init_with"] if e["arm"] == arm]) for s in cfg["child_evals"]]
             for arm in ("random init", "init-with", "init-with --keep-shared-tokens")}
    jumps = {kind: [e["jump"] for e in r["insert_jump"] if e["init"] == kind] for kind in JUMP_INITS}
    first = {e["arm"]: e for e in r["insert_after"] if e["index"] == cfg["after_positions"][0]}
    ref_arm, ours_arm = ARMS[1][0], ARMS[3][0]
    lines = [
        "# Growth experiments: init-with and insert-layer",
        "",
        "Generated by `python experiments/growth/run.py` (seeded: the same command gives the same numbers; all "
        f"of them are in `results.json`; this run took {r['seconds']:.0f} s with "
        f"NUMBA_NUM_THREADS={cfg['numba_threads']} on a shared machine). `--smoke` runs a seconds-long version "
        "into a temp dir.",
        "",
        f"Data: `simple_dummy` text ({cfg['words']} words, seed 1234); validation = the last 10%. "
        f"Models: E{cfg['E']} L{cfg['L']} H{cfg['H']} T{cfg['T']}, positional encoding none, batch {cfg['batch']}, "
        "AdamW with the reference schedule (lr 1e-3, warm-up 100 steps from lr 0). "
        f"Parents: {cfg['parent_tokenizer']}, trained {cfg['parent_steps']} steps "
        f"(validation loss {parents} for seeds {seeds}).",
        "",
        "## Findings",
        "",
        f"- init-with beats a random init of the same shape on the parent's data: validation loss "
        f"{child['init-with'][-1]:.3f} against {child['random init'][-1]:.3f} after {last} steps "
        f"({child['init-with'][mid]:.3f} against {child['random init'][mid]:.3f} after {cfg['child_evals'][mid]}); "
        f"with --keep-shared-tokens {child['init-with --keep-shared-tokens'][-1]:.3f}.",
        f"- insert-layer, loss right after insertion (mean over {len(seeds)} parents and all "
        f"{cfg['L'] + 1} indices): random (the reference's init) {_mean(jumps['random']):+.3f} "
        f"(up to {max(jumps['random']):+.3f}); near-identity {_mean(jumps['near-identity']):+.4f} "
        f"(largest {max(jumps['near-identity'], key=abs):+.4f}).",
        f"- At index {cfg['after_positions'][0]} on the seed-{seeds[0]} parent: the reference (random + optimizer "
        f"reset) goes from {first[ARMS[0][0]]['val_loss'][0]:.3f} to {first[ref_arm]['val_loss'][0]:.3f} and is "
        f"still at {first[ref_arm]['val_loss'][cfg['after_evals'][2]]:.3f} after {cfg['after_evals'][2]} steps; "
        f"near-identity starts at {first[ours_arm]['val_loss'][0]:.3f}.",
        "",
        "## 1. init-with against a random init",
        "",
        f"Child tokenizer: a byte-level BPE trained on the same text ({cfg['child_tokenizer']}), so the loss "
        "is per BPE token and the three arms are comparable to each other (not to the parents' per-character "
        f"loss). The random arm and the init-with arms share the seed of their fresh tensors (token_embedding, "
        f"head_map_*), so they differ only in the body. Each arm trains {last} steps on the same batches; "
        f"validation loss after n steps, mean over seeds {seeds}:",
        "",
        "| arm | " + " | ".join(f"step {s}" for s in cfg["child_evals"]) + " |",
        "|---|" + "---|" * len(cfg["child_evals"]),
    ]
    for arm, vals in child.items():
        lines.append(f"| {arm} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    lines += [
        "",
        "The reference's log (#39) saw the same ordering at a larger scale: 5.06 with init-with against 6.11 "
        "from random after 248 steps. --keep-shared-tokens (the tokens both vocabularies spell the same, here the "
        "single characters) starts lower still, since those tokens keep their trained rows.",
        "",
        "## 2. insert-layer: the loss right after insertion",
        "",
        "Validation loss of the grown model minus the parent's, before any training step, mean (min..max) "
        f"over the parents of seeds {seeds}:",
        "",
        "| init of the new layer | " + " | ".join(f"at {k}" for k in range(cfg["L"] + 1)) + " |",
        "|---|" + "---|" * (cfg["L"] + 1),
    ]
    for kind in JUMP_INITS:
        cells = []
        for k in range(cfg["L"] + 1):
            j = [e["jump"] for e in r["insert_jump"] if e["init"] == kind and e["index"] == k]
            cells.append(f"{_mean(j):+.4f} ({min(j):+.4f}..{max(j):+.4f})")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "- `random`: the reference's init (the LN gains too are N(0, 0.02)). Tiny random-sign gains scramble "
        "the stream that the layers above were trained to read.",
        "- `near-identity` (our default): LN gains 1, biases 0, proj and feedforward2 zero, q/k/v and "
        "feedforward1 N(0, 0.02). The layer's output is then a per-row affine map of its input, and the next "
        "LayerNorm (the only reader of a layer's output) cancels that: a no-op up to LayerNorm's epsilon. The "
        "small residue at index 0 is that epsilon acting on the raw embeddings, whose variance is small.",
        "- `near-identity, LN copied from a neighbour` (the LN gains and biases of the old layer that now "
        "follows, or precedes when appending): a natural guess, and as bad as random. Per-channel gains are not "
        "a per-row affine map, so the next LayerNorm no longer cancels the layer.",
        "- `LN gains 1, proj/ff2 random`: the gains matter most. With unit gains the branch outputs from "
        "N(0, 0.02) weights are small next to the unit-variance normalised stream, so the jump is already "
        "small; zeroing proj and feedforward2 makes it exact.",
        "",
        "## 3. insert-layer: training on",
        "",
        f"The seed-{seeds[0]} parent, grown at index k, then {cfg['after_steps']} more steps on the same batches "
        "for every arm. `kept` = the moments move with their tensors, the new layer's start at zero and the step "
        "continues (lr stays at ~1e-3); `reset` = the reference (no moments, warm-up restarts at lr 0); the "
        "`v from its neighbour` arm is an alternative we measured and did not adopt (the new layer's second "
        "moments copied from the old layer next to it). Validation loss after n steps (step 0 = right after "
        "insertion), and the training loss of the first step (what the reference's log shows as the "
        "post-insertion spike):",
        "",
    ]
    for k in cfg["after_positions"]:
        lines += [f"Inserted at {k}:", "",
                  "| arm | first-step train loss | " + " | ".join(f"step {s}" for s in cfg["after_evals"]) + " |",
                  "|---|---|" + "---|" * len(cfg["after_evals"])]
        for e in (e for e in r["insert_after"] if e["index"] == k):
            lines.append(f"| {e['arm']} | {e['train_loss_first_step']:.3f} | "
                         + " | ".join(f"{e['val_loss'][s]:.3f}" for s in cfg["after_evals"]) + " |")
        lines.append("")
    lines += [
        "Reading: the 3-layer parents are close to where a 4-layer model gets in this many steps, so these "
        "runs show the transient after insertion, not a gain from depth. The random init needs tens to "
        "hundreds of steps to come back; keeping its optimizer makes the first tens of steps recover much "
        "faster (no warm-up from lr 0), though it is not always ahead after 200 steps. "
        "With near-identity, every arm stays within a few thousandths of training on without insertion. With "
        "the optimizer kept, the new layer's zero moments at a late step give it updates a few times larger "
        "than Adam's usual first steps (its second moment starts at zero while the bias correction is already "
        "close to 1), which shows as a bump of a few thousandths over the first ~50 steps. Copying a "
        "neighbour's second moments removes the bump (it caps the new layer's first updates at the neighbour's "
        "gradient scale); resetting avoids it at the price of a warm-up for the whole model. We keep zero "
        "moments, the simplest rule: the bump is a few thousandths and gone by step 100.",
        "",
        "Reproduce a single insertion with the CLI: `femtogpt insert-layer --input model.dat --output grown.dat "
        "--insert-at 1 --init near-identity` (or `--init random --reset-optimizer` for the reference), then "
        "`femtogpt eval --model grown.dat --dataset dataset.txt` against the same for model.dat.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a tiny, seconds-long run (writes to a temp dir)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where results.json and README.md go")
    ap.add_argument("--readme-only", action="store_true", help="rewrite README.md from the existing results.json")
    args = ap.parse_args(argv)
    out = args.out_dir or (Path(tempfile.mkdtemp(prefix="growth-smoke-")) if args.smoke else HERE)
    out.mkdir(parents=True, exist_ok=True)
    if args.readme_only:
        results = json.loads((out / "results.json").read_text())
    else:
        results = experiment(SMOKE if args.smoke else FULL, lambda msg: print(msg, flush=True))
        results = json.loads(json.dumps(results, default=float))  # int keys -> str, numpy -> float
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    # the README reads evals by int step: undo the JSON key conversion for it
    for key in ("init_with", "insert_after"):
        for e in results[key]:
            e["val_loss"] = {int(s): v for s, v in e["val_loss"].items()}
    (out / "README.md").write_text(readme(results))
    print(f"wrote {'' if args.readme_only else str(out / 'results.json') + ' and '}{out / 'README.md'} "
          f"({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
