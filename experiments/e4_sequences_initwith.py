"""e4: log #42/#43, simple_sequence(2) from scratch vs init-with from a model trained on other text.

The fork: every from-scratch model (411K-2.8M parameters, 442-1435 steps) got simple_sequence's
delimiters right and its letters wrong, and failed simple_sequence2; only init-with from a Rust-code
"foundation" (E162 L6 H6, trained for thousands of steps) solved both: 3/3 prompts each, after 398
(#42, T 32) and 630 (#43, T 48) steps.

Ours, scaled to fit ~10 minutes on 2 cores: a foundation E64 L4 H4 (ascii, no PE, T 64) trained on
Python's standard-library source (our "other text"); then for each task, from the same seeds and on
the same batches: from scratch, init-with (the reference: fresh embeddings and head) and init-with
keeping the rows of shared tokens (our option; with one tokenizer that is plain fine-tuning). Scores
at checkpoints: simple_sequence on its 40 phases (letters and delimiters apart), simple_sequence2 on
100 lines a 2,000-line dump never contains, plus the log's three prompts each.

    python experiments/e4_sequences_initwith.py      # ~8-10 minutes on 2 cores
    python experiments/e4_sequences_initwith.py --smoke
"""
import time

import common as C
from femtogpt.growth.surgery import init_with

FORK = {"simple_sequence": {"scratch": "0/3 prompts (delimiters right, letters wrong), 442-1000 steps",
                            "init_with": "3/3 prompts after 398 steps (E162 L6 H6)"},
        "simple_sequence2": {"scratch": "0/3 prompts, 5 configurations, 801-1435 steps",
                             "init_with": "3/3 prompts after 630 steps (E162 L6 H6)"}}
TASK_T = {"simple_sequence": 32, "simple_sequence2": 48}


def configure(p):
    p.add_argument("--foundation-steps", type=int, default=1000)
    p.add_argument("--steps", type=int, default=600, help="steps on each task [600]")
    p.add_argument("--seeds", type=int, default=2)


def task_score(session, task, seed, samples=None):
    r = C.score(session, task, samples, seed)
    d = r["details"]
    out = {"score": r["score"], "log_prompts": sum(p["correct"] for p in r["log_prompts"])}
    if task == "simple_sequence":
        out.update(letters=d["letters"], delimiters=d["delimiters"])
    else:
        out.update(line2=d["line2"], columns=d["columns"])
    return out


def main():
    args = C.parse_args(__doc__, configure)
    t_start = time.perf_counter()
    tok = C.tokenizer("ascii")
    if args.smoke:
        size, f_steps, steps, every, seeds, corpus_chars = dict(E=16, L=1, H=2), 4, 4, 2, 1, 20_000
    else:
        size, f_steps, steps, every, seeds, corpus_chars = (dict(E=64, L=4, H=4), args.foundation_steps,
                                                            args.steps, 100, args.seeds, None)
    code = C.encode(tok, C.code_corpus(corpus_chars))
    cut = int(len(code) * 0.95)
    foundation = C.new_session(tok, T=64, pos_enc="none", seed=args.seed, **size)
    C.say(f"foundation: {C.describe(foundation)} on {len(code):,} tokens of Python source")
    fcurve = C.train(foundation, code[:cut], f_steps, args.seed, val_tokens=code[cut:], eval_every=250,
                     label="foundation", print_every=250)
    results = {"foundation": {"steps": f_steps, "loss_avg10": fcurve.tail(), "val": fcurve.val[-1][1],
                              "tokens": int(len(code)), "seconds": fcurve.seconds}, "tasks": {}}
    series = C.curve_series(fcurve, "foundation (Python source)", "grey", smooth_window=20)
    arms = ("scratch", "init-with", "init-with + shared tokens")
    for t_index, task in enumerate(("simple_sequence", "simple_sequence2")):
        T = TASK_T[task]
        data = C.dummy_tokens(tok, task, seed=args.seed)
        runs = []
        for seed in range(args.seed, args.seed + seeds):
            for k, arm in enumerate(arms):
                if arm == "scratch":
                    s = C.new_session(tok, T=T, pos_enc="none", seed=seed + 100, **size)
                else:
                    s, _ = init_with(foundation, tok, num_tokens=T, seed=seed + 100,
                                     keep_shared_tokens=arm.endswith("tokens"))
                curve, progress = C.Curve(), []
                for done in range(every, steps + every, every):
                    C.train(s, data, min(every, steps - (done - every)), seed, curve, label=f"{task} {arm}",
                            print_every=0)
                    progress.append({"step": len(curve.train), "loss_avg10": curve.tail(),
                                     **task_score(s, task, seed, 8 if args.smoke else None)})
                final = progress[-1]
                C.say(f"  {task} {arm} seed {seed}: loss {final['loss_avg10']:.4f} score {final['score']:.3f} "
                      f"log prompts {final['log_prompts']}/3 ({curve.seconds:.0f}s)")
                runs.append({"arm": arm, "seed": seed, "final": final, "progress": progress,
                             "s_per_step": curve.seconds / steps, "curve": curve.to_json()})
                if seed == args.seed:
                    series += [{**x, "x": [f_steps + i for i in x["x"]], "style": ("-", "--")[t_index]}
                               for x in C.curve_series(curve, f"{task}: {arm}", f"C{k}", with_val=False)]
        summary = {arm: {key: [round(r["final"][key], 4) for r in runs if r["arm"] == arm]
                         for key in ("loss_avg10", "score", "log_prompts")} for arm in arms}
        results["tasks"][task] = {"T": T, "steps": steps, "fork": FORK[task], "summary": summary, "runs": runs}
    C.write_results(args, "e4_sequences_initwith", {"size": size, **results}, time.perf_counter() - t_start)
    C.plot(args, "e4_sequences_initwith", series,
           "e4: foundation on Python source, then simple_sequence (solid) / simple_sequence2 (dashed)",
           events=[(f_steps, "task training starts")])


if __name__ == "__main__":
    main()
