"""e2: log #29/#30, positional encoding none vs absolute (and learned, rotary): does "none >> absolute" hold?

The fork (§8.2): E144 L6 H6, ascii tokenizer, T 80, dropout 0.1; 500 steps, then insert-layer at 3
(random init, optimizer reset: the reference's insert) and 200 more steps; 3 models per encoding.
Final losses, 6L -> 7L, on simple_sequence (#29): none 0.7596 / 0.7716 / 0.7581 -> 0.7472 / 0.7554 /
0.7657, absolute 1.4594 / 2.4040 / 1.6935 -> 1.0524 / 2.4025 / 1.4461; on simple_dummy2 (#30): none
1.8017 / 1.7824 / 1.7750 -> 1.7795 / 1.7534 / 1.7538, absolute 2.7156 / 2.2187 / 2.7286 -> 2.7092 /
2.2058 / 2.7123. We run the same protocol, seeded, and report for each model the mean of the last 10
training losses (a single step's loss is noisy) and a held-out validation loss, plus the task
scores: the letters/delimiters of simple_sequence and the per-action accuracy of simple_dummy2,
and #30's probe "acbafbe3" (answer "gih;"). Issue 17 adds the encodings the fork's TODO list asked
for, learned (a trainable [T, E] table) and rotary (RoPE on Q and K), under the same protocol.
`--pe` picks the encodings to run; `--reuse` keeps the earlier runs of the others from the results
file (the runs are deterministic: the same seed gives the same numbers).

    python experiments/e2_posenc.py --task simple_sequence    # ~25-30 min on 2 cores
    python experiments/e2_posenc.py --task simple_dummy2      # ~25-30 min
    python experiments/e2_posenc.py --pe learned rotary --reuse   # add the new encodings
    python experiments/e2_posenc.py --smoke
"""
import time

import common as C
from femtogpt.growth.surgery import insert_layer

FORK = {
    "simple_sequence": {"none": [[0.7596, 0.7472], [0.7716, 0.7554], [0.7581, 0.7657]],
                        "absolute": [[1.4594, 1.0524], [2.4040, 2.4025], [1.6935, 1.4461]]},
    "simple_dummy2": {"none": [[1.8017, 1.7795], [1.7824, 1.7534], [1.7750, 1.7538]],
                      "absolute": [[2.7156, 2.7092], [2.2187, 2.2058], [2.7286, 2.7123]]},
}
ENCODINGS = ("none", "absolute", "learned", "rotary")
COLORS = {"none": "C1", "absolute": "C0", "learned": "C2", "rotary": "C3"}
FORK_PROBE = {"none": [["gkh;", "iih;"], ["kkk;", "hkh;"], ["gh;", "khi;"]],  # 6L, 7L per model
              "absolute": [["garbage", "garbage"], [";", "\\n"], ["garbage", "garbage"]]}


def configure(p):
    p.add_argument("--task", choices=("simple_sequence", "simple_dummy2", "both"), default="both")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=500, help="steps before the insertion [500]")
    p.add_argument("--extra", type=int, default=200, help="steps after the insertion [200]")
    p.add_argument("--pe", nargs="+", choices=ENCODINGS, default=list(ENCODINGS), help="encodings to run [all]")
    p.add_argument("--reuse", action="store_true",
                   help="keep the results file's runs of the encodings not in --pe")


def task_scores(session, task, seed, samples):
    r = C.score(session, task, samples, seed)
    d = r["details"]
    out = {"score": r["score"]}
    if task == "simple_sequence":
        out.update(letters=d["letters"], delimiters=d["delimiters"])
    else:
        out.update(actions={a: row["accuracy"] for a, row in d["actions"].items()},
                   probe=C.greedy(session, "acbafbe3", 5))
    return out


def run_task(args, task):
    t_start = time.perf_counter()
    tok = C.tokenizer("ascii")
    if args.smoke:
        size, steps, extra, seeds, samples = dict(E=12, L=2, H=2, T=16), 4, 3, 1, 10
    else:
        size, steps, extra, seeds, samples = dict(E=144, L=6, H=6, T=80), args.steps, args.extra, args.seeds, 100
    if task == "simple_sequence":
        train_tokens = C.dummy_tokens(tok, task)
        val_tokens = C.dummy_tokens(tok, task, 400)  # periodic data: nothing can be held out
    else:
        train_tokens = C.dummy_tokens(tok, task, seed=args.seed)
        val_tokens = C.dummy_tokens(tok, task, 3000, seed=args.seed + 1000)
    name = f"e2_posenc_{task}"
    runs, series = reused_runs(args, name), []
    for pe in args.pe:
        for k in range(seeds):
            seed = args.seed + k
            label = f"{pe} seed {seed}"
            s = C.new_session(tok, pos_enc=pe, seed=seed, **size)
            C.say(f"{task} {label}: {C.describe(s)}")
            curve = C.train(s, train_tokens, steps, seed, dropout=0.1, val_tokens=val_tokens,
                            eval_every=50, label=label)
            before = {"loss_avg10": curve.tail(), "val": curve.val[-1][1], **task_scores(s, task, seed, samples)}
            s, _ = insert_layer(s, 3 if size["L"] > 3 else 1, init="random", seed=seed + 7,
                                reset_optimizer=True)  # the reference's insert-layer
            curve.events.append((steps, "insert@3"))
            C.train(s, train_tokens, extra, seed + 500, curve, dropout=0.1, val_tokens=val_tokens,
                    eval_every=50, label=label + " +1L")
            after = {"loss_avg10": curve.tail(), "val": curve.val[-1][1], **task_scores(s, task, seed, samples)}
            runs.append({"pos_enc": pe, "seed": seed, "before": before, "after": after,
                         "first_loss_after_insert": curve.train[steps], "curve": curve.to_json()})
            C.say(f"  -> {pe}: 6L {before['loss_avg10']:.4f} (val {before['val']:.4f}) -> 7L "
                  f"{after['loss_avg10']:.4f} (val {after['val']:.4f}); score {before['score']:.3f} -> "
                  f"{after['score']:.3f}")
    runs.sort(key=lambda r: (ENCODINGS.index(r["pos_enc"]), r["seed"]))
    for r in runs:
        curve = C.Curve.from_json(r["curve"])
        series += C.curve_series(curve, f"{r['pos_enc']} seed {r['seed']}", color=COLORS[r["pos_enc"]],
                                 with_val=False)
    present = [pe for pe in ENCODINGS if any(r["pos_enc"] == pe for r in runs)]
    summary = {}
    for pe in present:
        rs = [r for r in runs if r["pos_enc"] == pe]
        summary[pe] = {f"{when}_{key}": [round(r[when][key], 4) for r in rs]
                       for when in ("before", "after") for key in ("loss_avg10", "val", "score")}
    inserted_lower = [r["after"]["loss_avg10"] < r["before"]["loss_avg10"] for r in runs]
    verdict = {"insert_then_200_lowers_loss": inserted_lower}
    if "none" in summary and "absolute" in summary:
        worst_none = max(max(v) for k, v in summary["none"].items() if k.endswith("loss_avg10"))
        best_abs = min(min(v) for k, v in summary["absolute"].items() if k.endswith("loss_avg10"))
        verdict.update(none_always_better=worst_none < best_abs, worst_none=worst_none, best_absolute=best_abs)
    verdict["mean_before_loss_avg10"] = {pe: round(sum(summary[pe]["before_loss_avg10"]) /
                                                   len(summary[pe]["before_loss_avg10"]), 4) for pe in present}
    C.write_results(args, name, {"task": task, "fork": FORK[task], "fork_probe_outputs": FORK_PROBE,
                                 "steps": steps, "extra": extra, "size": size, "summary": summary,
                                 "verdict": verdict, "runs": runs}, time.perf_counter() - t_start)
    C.plot(args, name, series, f"e2: PE none (orange), absolute (blue), learned (green), rotary (red) on "
           f"{task}, insert@3 at {steps}", events=[(steps, "insert@3")])


def reused_runs(args, name):
    """With --reuse: the runs of the encodings not asked for, from the results file."""
    path = args.out_dir / f"{name}.json"
    if not args.reuse or not path.exists():
        return []
    import json

    return [r for r in json.loads(path.read_text())["runs"] if r["pos_enc"] not in args.pe]


def main():
    args = C.parse_args(__doc__, configure)
    for task in (("simple_sequence", "simple_dummy2") if args.task == "both" else (args.task,)):
        run_task(args, task)


if __name__ == "__main__":
    main()
