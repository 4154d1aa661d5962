"""e1: log #1/#2, E64 L4 H4 (T 64, byte tokenizer, absolute PE) on simple_dummy.

The fork trained this for 685 (#1) and 629 (#2) steps: final loss 1.4672 / 1.4760 at 0.199 /
0.205 s per step on an M3 Pro, judged "success" by eye. We train the same model for 685 steps
with 3 seeds, then the same with no positional encoding, and one run continued to 2,000 steps,
and score each with pattern validity (the share of sampled words that follow the generator's
rules) instead of by eye. The loss floor of the data (the generator's entropy per character) is
about 1.241 nats: ln5 + ln5 + ln7 + ln4 + ln2 + (ln6 + ln3)/2 per word of 7 characters on average.

    python experiments/e1_simple_dummy.py            # about 5-8 minutes on 2 cores
    python experiments/e1_simple_dummy.py --smoke    # seconds
"""
import math
import time

import common as C

FORK = {"#1": {"steps": 685, "loss": 1.4672, "s_per_step": 0.199},
        "#2": {"steps": 629, "loss": 1.4760, "s_per_step": 0.205}}
FLOOR = (2 * math.log(5) + math.log(7) + math.log(4) + math.log(2) + (math.log(6) + math.log(3)) / 2) / 7


def main():
    args = C.parse_args(__doc__, lambda p: p.add_argument("--seeds", type=int, default=3))
    t_start = time.perf_counter()
    tok = C.tokenizer("byte")  # V = 256: the fork's 232K parameters
    if args.smoke:
        size, steps, long_steps, seeds, samples = dict(E=16, L=1, H=2, T=16), 6, 10, 1, 20
    else:
        size, steps, long_steps, seeds, samples = dict(E=64, L=4, H=4, T=64), 685, 2000, args.seeds, 200
    train_tokens = C.dummy_tokens(tok, "simple_dummy", seed=args.seed)
    val_tokens = C.dummy_tokens(tok, "simple_dummy", 1000, seed=args.seed + 1000)  # held out
    runs, series = [], []
    for pe in ("absolute", "none"):
        for k in range(seeds):
            seed = args.seed + k
            session = C.new_session(tok, pos_enc=pe, seed=seed, **size)
            label = f"{pe} seed {seed}"
            C.say(f"{label}: {C.describe(session)}")
            n = long_steps if (pe == "none" and k == 0) else steps
            curve = C.Curve()
            C.train(session, train_tokens, steps, seed, curve, val_tokens=val_tokens, eval_every=50, label=label)
            at_fork = {"loss_last": curve.train[-1], "loss_avg10": curve.tail(), "val": curve.val[-1][1],
                       "validity_t1": C.score(session, "simple_dummy", samples, seed)["score"],
                       "validity_t05": C.score(session, "simple_dummy", samples, seed, 0.5)["score"]}
            if n > steps:
                C.train(session, train_tokens, n - steps, seed, curve, val_tokens=val_tokens, eval_every=50,
                        label=label)
            final = C.score(session, "simple_dummy", samples, seed)
            runs.append({"pos_enc": pe, "seed": seed, "steps": n, "params": session.hp.num_params(),
                         f"at_{steps}": at_fork, "loss_avg10": curve.tail(), "val": curve.val[-1][1],
                         "validity_t1": final["score"], "validity_details": final["details"],
                         "sample": "".join(w + "\n" for w in final["examples"][:8]),
                         "s_per_step": curve.seconds / n, "curve": curve.to_json()})
            C.say(f"  -> at {steps}: {at_fork}; final validity {final['score']:.3f}")
            series += C.curve_series(curve, f"{label} ({n} steps)", color="C0" if pe == "absolute" else "C1",
                                     with_val=k == 0)
    summary = {}
    for pe in ("absolute", "none"):
        rs = [r[f"at_{steps}"] for r in runs if r["pos_enc"] == pe]
        summary[pe] = {key: [round(r[key], 4) for r in rs] for key in rs[0]}
        summary[pe]["s_per_step"] = round(sum(r["s_per_step"] for r in runs if r["pos_enc"] == pe) / len(rs), 4)
    wall = time.perf_counter() - t_start
    C.write_results(args, "e1_simple_dummy", {"fork": FORK, "loss_floor": FLOOR, "steps": steps,
                                              "summary_at_fork_steps": summary, "runs": runs}, wall)
    C.plot(args, "e1_simple_dummy", series, "e1: E64 L4 H4 on simple_dummy (byte tokenizer, T 64)",
           hlines=[(FORK["#1"]["loss"], "fork #1 final (685 steps)"), (FLOOR, "entropy floor")],
           events=[(steps, f"{steps} steps")])


if __name__ == "__main__":
    main()
