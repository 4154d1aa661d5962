"""e3: log #20-#27, simple_dummy2 per-action accuracy, and how far past it we get.

The fork's best (#27): E64 L4 H4, byte tokenizer, absolute PE, T 80, dropout 0.1, 1665 steps,
loss 1.6631; its eval (100 prompts, temperature 0.5) got actions 0 and 9 right and 1 of 10 on
action 2, nothing else; no model in #20-#27 ever passed "all actions > 70%". The data's entropy
floor is about 1.396 nats per character (a line: length ln5, ~6 data letters ln6 each, action ln10,
over ~10.5 characters); a model that solves 0 and 9 but guesses every copied letter sits near 1.81.

Run A replicates #27. Run B spends the time we save: no positional encoding, no dropout, and
`--long-steps` (4,000) steps, scored along the way. Scores use the reference eval's prompts (10
previous lines, last 60 characters), greedy, on 1,000 prompts (~100 per action); the first 100 are
exactly the fork's protocol size.

Run C (`--foundation`, a separate result file) tries the trick that solved simple_sequence in e4:
a foundation trained on Python source (E64 L4 H4, no PE, 1,000 steps), then init-with keeping the
shared token rows (with one tokenizer: fine-tuning) on simple_dummy2 for `--foundation-steps`.

    python experiments/e3_dummy2_actions.py               # runs A and B, ~10-11 minutes on 2 cores
    python experiments/e3_dummy2_actions.py --foundation  # run C only, ~6 minutes
    python experiments/e3_dummy2_actions.py --smoke
"""
import math
import time

import common as C

FORK_27 = {"steps": 1665, "loss": 1.6631,
           "actions": {0: [9, 0], 1: [0, 6], 2: [1, 10], 3: [0, 12], 4: [0, 9], 5: [0, 7], 6: [0, 15],
                       7: [0, 12], 8: [0, 12], 9: [7, 0]}}  # [correct, incorrect]
FORK_24 = {"steps": 3756, "loss": 1.6839, "note": "E96 L8 H4 d0.1: the first model to get action 1 right once"}
FLOOR = (math.log(5) + 6 * math.log(6) + math.log(10)) / 10.5


def configure(p):
    p.add_argument("--long-steps", type=int, default=4000, help="steps of run B [4000]")
    p.add_argument("--samples", type=int, default=1000, help="prompts per final score [1000]")
    p.add_argument("--foundation", action="store_true", help="run C only: fine-tune a Python-source foundation")
    p.add_argument("--foundation-steps", type=int, default=2000, help="run C's steps on simple_dummy2 [2000]")


def actions_row(result):
    return {a: row["accuracy"] for a, row in result["details"]["actions"].items()}


def run(args, tok, name, pe, dropout, steps, size, train_tokens, val_tokens, score_every, samples, session=None):
    session = session or C.new_session(tok, pos_enc=pe, seed=args.seed, **size)
    C.say(f"{name}: {C.describe(session)}, dropout {dropout}, {steps} steps")
    curve, progress = C.Curve(), []
    done = 0
    while done < steps:
        n = min(score_every, steps - done)
        C.train(session, train_tokens, n, args.seed, curve, dropout=dropout, val_tokens=val_tokens,
                eval_every=score_every, label=name, print_every=score_every)
        done += n
        r = C.score(session, "simple_dummy2", 200, args.seed + 1)
        progress.append({"step": done, "score": r["score"], "actions": actions_row(r)})
        C.say(f"  {name} step {done}: mean per-action {r['score']:.3f}, "
              + " ".join(f"{a}:{(v or 0):.2f}" for a, v in actions_row(r).items()))
    fork_protocol = C.score(session, "simple_dummy2", 100, args.seed)
    big = C.score(session, "simple_dummy2", samples, args.seed)
    return {"name": name, "pos_enc": pe, "dropout": dropout, "steps": steps, "params": session.hp.num_params(),
            "loss_avg10": curve.tail(), "val": curve.val[-1][1], "s_per_step": curve.seconds / steps,
            "score_100": fork_protocol["score"],
            "actions_100": {a: [row["correct"], row["total"]] for a, row in fork_protocol["details"]["actions"].items()},
            "score": big["score"], "actions": actions_row(big), "over_70": big["details"]["actions_over_70"],
            "examples": big["examples"], "progress": progress, "curve": curve.to_json()}, curve


def main():
    args = C.parse_args(__doc__, configure)
    t_start = time.perf_counter()
    tok = C.tokenizer("byte")
    if args.smoke:
        size, steps, long_steps, every, samples = dict(E=16, L=1, H=2, T=24), 4, 6, 3, 20
    else:
        size, steps, long_steps, every, samples = dict(E=64, L=4, H=4, T=80), 1665, args.long_steps, 500, args.samples
    train_tokens = C.dummy_tokens(tok, "simple_dummy2", seed=args.seed)
    val_tokens = C.dummy_tokens(tok, "simple_dummy2", 3000, seed=args.seed + 1000)
    if args.foundation:
        return run_foundation(args, tok, size, train_tokens, val_tokens, every, samples, t_start)
    a, ca = run(args, tok, "A #27 replica (abs, d0.1)", "absolute", 0.1, steps, size, train_tokens, val_tokens,
                every if args.smoke else 555, samples)
    b, cb = run(args, tok, "B (none, d0)", "none", 0.0, long_steps, size, train_tokens, val_tokens, every, samples)
    C.write_results(args, "e3_dummy2_actions", {"fork_27": FORK_27, "fork_24": FORK_24, "loss_floor": FLOOR,
                                                "size": size, "runs": [a, b]}, time.perf_counter() - t_start)
    series = C.curve_series(ca, a["name"], "C0") + C.curve_series(cb, b["name"], "C1")
    C.plot(args, "e3_dummy2_actions", series, "e3: simple_dummy2, E64 L4 H4 T80",
           hlines=[(FORK_27["loss"], "fork #27 final"), (FLOOR, "entropy floor")])
    groups = {"0 and 9 (no copy)": (0, 9), "1-4 (this line)": (1, 2, 3, 4), "5-8 (previous line)": (5, 6, 7, 8)}
    acc = []
    for r, style in ((a, "o--"), (b, "o-")):
        for k, (label, acts) in enumerate(groups.items()):
            ys = [sum(p["actions"][x] or 0 for x in acts) / len(acts) for p in r["progress"]]
            acc.append({"x": [p["step"] for p in r["progress"]], "y": ys, "style": style, "color": f"C{k}",
                        "label": f"{r['name']}: {label}"})
    C.plot(args, "e3_dummy2_actions_accuracy", acc, "e3: simple_dummy2 accuracy by action group (200 prompts)",
           ylabel="accuracy")


def run_foundation(args, tok, size, train_tokens, val_tokens, every, samples, t_start):
    from femtogpt.growth.surgery import init_with

    code = C.encode(tok, C.code_corpus(20_000 if args.smoke else None))
    f_steps, steps = (4, 6) if args.smoke else (1000, args.foundation_steps)
    foundation = C.new_session(tok, pos_enc="none", seed=args.seed, **{**size, "T": 64})
    C.say(f"foundation: {C.describe(foundation)} on {len(code):,} tokens of Python source")
    fcurve = C.train(foundation, code, f_steps, args.seed, label="foundation", print_every=250)
    child, _ = init_with(foundation, tok, num_tokens=size["T"], seed=args.seed + 100, keep_shared_tokens=True)
    c, cc = run(args, tok, "C (foundation, fine-tuned)", "none", 0.0, steps, size, train_tokens, val_tokens,
                every, samples, session=child)
    C.write_results(args, "e3_dummy2_foundation", {"fork_27": FORK_27, "loss_floor": FLOOR, "size": size,
                                                   "foundation": {"steps": f_steps, "loss_avg10": fcurve.tail()},
                                                   "runs": [c]}, time.perf_counter() - t_start)
    C.plot(args, "e3_dummy2_foundation", C.curve_series(cc, c["name"], "C2"),
           "e3 run C: a Python-source foundation fine-tuned on simple_dummy2",
           hlines=[(FORK_27["loss"], "fork #27 final"), (FLOOR, "entropy floor")])


if __name__ == "__main__":
    main()
