"""e7: the fork's growth recipe (#44-#49, incremental-training.py) through `grow`, 3 seeds, vs scratch.

The fork grew models a layer at a time: #48 (Korean text, char, E216 H8 T256) trained 200 steps per
layer from L4 to L13 and ended at 1.525 / 1.511 / 1.546, against 1.492 / 1.686 / 1.606 for an L12
trained 2,000 steps from scratch ("failure: no gain over scratch"); #49 (300 steps per layer up to
L16) ended at 1.059 / 1.063 / 1.112 ("kinda works"). e5 reproduces #48/#49 with its own loop and
compares insertion variants; this one runs the recipe through the library's `grow`
(femtogpt/growth/pipeline.py, the `femtogpt grow` command): model files, numbered checkpoints,
the stored settings and seeded batches of `train`.

Ours (Python standard-library source, ascii, E64 H4 T64, no PE, batch 32, dropout 0 as #48): L4
for S steps, then a layer appended (--insert-at end, as incremental-training.py; --init as
chosen, near-identity by default, optimizer kept) and S more, up to L8: 5S steps. Baseline: L8
from scratch for the same 5S steps on the same batches (the same seed keys them by step). Each of
3 seeds draws its own init, batches and new layers. Validation loss on held-out source (the last 5%)
of every stage checkpoint and of the baseline at the same steps.

    python experiments/e7_grow.py                  # S = 200, 3 seeds: 18 minutes on 2 busy cores
    python experiments/e7_grow.py --smoke
"""
import statistics
import tempfile
import time
from pathlib import Path

import common as C
from femtogpt.growth.pipeline import grow, stage_path
from femtogpt.io.checkpoint import load
from femtogpt.train.progress import SilentDisplay

FORK = {"#48": {"grown_l13_200_per_layer": [1.525, 1.511, 1.546], "scratch_l12_2000": [1.492, 1.686, 1.606],
                "verdict": "failure: no gain over scratch"},
        "#49": {"grown_l16_300_per_layer": [1.059, 1.063, 1.112], "l4_further_1300": [1.270, 1.236, 1.172],
                "verdict": "kinda works"}}


def configure(p):
    p.add_argument("--stage-steps", type=int, default=200, help="S: steps per depth [200]")
    p.add_argument("--seeds", type=int, default=3, help="models per arm, seeds --seed, --seed + 1, ... [3]")
    p.add_argument("--init", choices=("near-identity", "random"), default="near-identity",
                   help="the new layers' init [near-identity]")
    p.add_argument("--insert-at", choices=("end", "mid"), default="end", help="where layers go [end]")


class _Record(SilentDisplay):
    """grow's display for one stage: each step's loss into the Curve."""

    def __init__(self, curve):
        self.curve = curve

    def step(self, step, loss, lr, seconds):
        self.curve.train.append(loss)


def grown(args, tok, seed, size, S, top, train_tokens, val_tokens, folder):
    path = Path(folder) / f"grow-s{seed}.dat"
    C.new_session(tok, L=4, seed=seed, **size).save(path)
    curve, t0 = C.Curve(), time.perf_counter()
    result = grow(path, train_tokens, top, S, insert_at=args.insert_at, init=args.init, seed=seed,
                  settings={"batch_size": 32, "dropout": 0.0}, save_every=0,
                  dataset_info={"dataset": "stdlib source, train split"},
                  display=lambda layers, steps, start: _Record(curve))
    if result.failure or result.stopped:
        raise ArithmeticError(f"seed {seed}: {result.failure or 'stopped'}")
    curve.seconds = time.perf_counter() - t0
    stages = []
    for k, L in enumerate(range(4, top + 1)):
        val = C.eval_loss(load(stage_path(path, L)), val_tokens)
        curve.val.append(((k + 1) * S, val))
        curve.events.append((k * S, f"L{L}"))
        tail = curve.train[max(0, (k + 1) * S - 10):(k + 1) * S]
        stages.append({"layers": L, "steps": (k + 1) * S, "val": val, "loss_avg10": sum(tail) / len(tail)})
        C.say(f"  seed {seed} grown L{L}: step {(k + 1) * S} val {val:.4f}")
    return {"seed": seed, "stages": stages, "final_val": stages[-1]["val"], "seconds": round(curve.seconds, 1),
            "curve": curve.to_json()}, curve


def scratch(tok, seed, size, S, top, train_tokens, val_tokens):
    s = C.new_session(tok, L=top, seed=seed, **size)
    steps = (top - 3) * S
    curve = C.train(s, train_tokens, steps, seed, val_tokens=val_tokens, eval_every=S,
                    label=f"seed {seed} scratch L{top}", print_every=S)
    return {"seed": seed, "layers": top, "steps": steps, "vals": [[st, round(v, 5)] for st, v in curve.val],
            "final_val": curve.val[-1][1], "seconds": round(curve.seconds, 1), "curve": curve.to_json()}, curve


def mean_sd(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def table(grows, scratches, S, top):
    """The results as markdown: per seed, then per stage (mean over seeds)."""
    lines = [f"| seed | grown L4->L{top} ({S}/depth) val | L{top} scratch ({(top - 3) * S} steps) val "
             f"| grown - scratch |", "|---|---|---|---|"]
    for g, s in zip(grows, scratches):
        lines.append(f"| {g['seed']} | {g['final_val']:.4f} | {s['final_val']:.4f} | "
                     f"{g['final_val'] - s['final_val']:+.4f} |")
    (gm, gs), (sm, ss) = mean_sd([g["final_val"] for g in grows]), mean_sd([s["final_val"] for s in scratches])
    dm, ds = mean_sd([g["final_val"] - s["final_val"] for g, s in zip(grows, scratches)])
    lines.append(f"| mean +- sd | {gm:.4f} +- {gs:.4f} | {sm:.4f} +- {ss:.4f} | {dm:+.4f} +- {ds:.4f} |")
    lines += ["", "| step | grown: depth | grown val (mean) | scratch val (mean) |", "|---|---|---|---|"]
    for k, L in enumerate(range(4, top + 1)):
        step = (k + 1) * S
        gv = statistics.mean(g["stages"][k]["val"] for g in grows)
        sv = statistics.mean(dict((st, v) for st, v in s["vals"])[step] for s in scratches)
        lines.append(f"| {step} | L{L} | {gv:.4f} | {sv:.4f} |")
    return "\n".join(lines)


def main():
    args = C.parse_args(__doc__, configure)
    t_start = time.perf_counter()
    tok = C.tokenizer("ascii")
    if args.smoke:
        size, S, top, chars, seeds = dict(E=16, H=2, T=16, pos_enc="none"), 3, 6, 30_000, min(args.seeds, 2)
    else:
        size, S, top, chars, seeds = dict(E=64, H=4, T=64, pos_enc="none"), args.stage_steps, 8, None, args.seeds
    code = C.encode(tok, C.code_corpus(chars))
    cut = int(len(code) * 0.95)
    train_tokens, val_tokens = code[:cut], code[cut:]
    grows, scratches, series = [], [], []
    with tempfile.TemporaryDirectory(prefix="e7-") as folder:  # the model files and stage checkpoints
        for k in range(seeds):
            seed = args.seed + k
            g, gc = grown(args, tok, seed, size, S, top, train_tokens, val_tokens, folder)
            s, sc = scratch(tok, seed, size, S, top, train_tokens, val_tokens)
            grows.append(g)
            scratches.append(s)
            C.say(f"  -> seed {seed}: grown {g['final_val']:.4f} ({g['seconds']:.0f}s), scratch "
                  f"{s['final_val']:.4f} ({s['seconds']:.0f}s)")
            series += C.curve_series(gc, f"grown L4->L{top}, seed {seed}", f"C{2 * k}")
            series += C.curve_series(sc, f"L{top} scratch, seed {seed}", f"C{2 * k + 1}")
    text = table(grows, scratches, S, top)
    C.say(text)
    C.write_results(args, "e7_grow", {"fork": FORK, "size": size, "stage_steps": S, "top_layers": top,
                                      "init": args.init, "insert_at": args.insert_at, "batch_size": 32,
                                      "grown": grows, "scratch": scratches, "table": text},
                    time.perf_counter() - t_start)
    C.plot(args, "e7_grow", series, f"e7: grow L4 -> L{top} ({S} steps per depth, {args.init}) vs L{top} scratch",
           events=[(k * S, f"L{4 + k}") for k in range(1, top - 3)])


if __name__ == "__main__":
    main()
