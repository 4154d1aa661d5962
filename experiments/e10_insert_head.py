"""e10: log #37/#38, the runs the fork could not do: growing a trained model by a head instead of a layer.

The fork (#37, rustc sources, bpe 1280+64, no PE, E96 L6 H4, T128): 1020 steps to 4.627 and the
note "I have `insert-layer` api, but I don't have `insert-head` api"; #38 (E162 L4 H6) then grew its
models by layers instead (insert@3, twice). femtogpt's `insert-head` adds one head of the same head
size to every layer with a zero slice of the output projection, so the model computes exactly the
same function right after; E stays, the attention width D = H*hs grows by hs.

Ours (Python standard-library source as the code corpus, ascii, no PE, #37's E96 L6 H4, T 64): a base
model trained S steps, then four branches of S more steps each from the same weights and optimizer:
  control       no change (H4)
  +1 head       insert-head (H5, D 120)
  +2 heads      insert-head twice (H6, D 144)
  +1 layer      insert-layer at the end, near-identity (L7), #38's way
We record the validation loss just before and just after the operation (the same for the function-
preserving ones), the training curve, the final validation loss, parameters and seconds per step.

    python experiments/e10_insert_head.py            # S = 300, 3 seeds: ~15 minutes on 2 cores
    python experiments/e10_insert_head.py --smoke
"""
import time

import common as C
from femtogpt.growth.heads import insert_head
from femtogpt.growth.surgery import insert_layer
from femtogpt.io.checkpoint import from_model_file

FORK = {"#37": {"size": "E96 L6 H4 T128", "steps": 1020, "final_loss": 4.6270,
                "note": "I have insert-layer api, but I don't have insert-head api"},
        "#38": {"size": "E162 L4 H6 -> L5 -> L6 (insert@3)", "final_loss": "3.4-3.6"}}
BRANCHES = ("control", "+1 head", "+2 heads", "+1 layer")


def configure(p):
    p.add_argument("--stage-steps", type=int, default=300, help="S: steps before and after the operation [300]")
    p.add_argument("--seeds", type=int, default=3)


def copy(session):
    return from_model_file(session.to_model_file())


def operate(session, branch, seed):
    if branch == "+1 head":
        return insert_head(session, seed=seed + 11)[0]
    if branch == "+2 heads":
        return insert_head(insert_head(session, seed=seed + 11)[0], seed=seed + 12)[0]
    if branch == "+1 layer":
        return insert_layer(session, session.hp.num_layers, init="near-identity", seed=seed + 13)[0]
    return session


def main():
    args = C.parse_args(__doc__, configure)
    t_start = time.perf_counter()
    tok = C.tokenizer("ascii")
    if args.smoke:
        size, S, seeds, eval_every = dict(E=12, L=2, H=2, T=16), 4, 1, 2
        text = C.code_corpus(20_000)
    else:
        size, S, seeds, eval_every = dict(E=96, L=6, H=4, T=64), args.stage_steps, args.seeds, 50
        text = C.code_corpus()
    tokens = C.encode(tok, text)
    cut = int(len(tokens) * 0.9)
    train_tokens, val_tokens = tokens[:cut], tokens[cut:]
    runs, series = [], []
    for k in range(seeds):
        seed = args.seed + k
        base = C.new_session(tok, seed=seed, **size)
        C.say(f"seed {seed} base: {C.describe(base)}; {len(train_tokens):,} training tokens")
        base_curve = C.train(base, train_tokens, S, seed, val_tokens=val_tokens, eval_every=eval_every,
                             label=f"base seed {seed}")
        before = C.eval_loss(base, val_tokens)
        for branch in BRANCHES:
            s = operate(copy(base), branch, seed)
            just_after = C.eval_loss(s, val_tokens)
            curve = C.Curve.from_json(base_curve.to_json())
            curve.events.append((S, branch))
            t0 = time.perf_counter()
            C.train(s, train_tokens, S, seed + 1000, curve, val_tokens=val_tokens, eval_every=eval_every,
                    label=f"{branch} seed {seed}")
            seconds_per_step = (time.perf_counter() - t0) / S
            run = {"seed": seed, "branch": branch, "size": C.describe(s), "params": s.hp.num_params(),
                   "val_before_op": round(before, 5), "val_just_after_op": round(just_after, 5),
                   "val_final": curve.val[-1][1], "train_avg10_final": round(curve.tail(), 5),
                   "seconds_per_step": round(seconds_per_step, 4), "curve": curve.to_json()}
            runs.append(run)
            C.say(f"  -> {branch}: val {before:.4f} -> just after {just_after:.4f} -> final {run['val_final']:.4f} "
                  f"({run['params']:,} params, {seconds_per_step:.3f} s/step)")
            series += C.curve_series(curve, f"{branch} seed {seed}", color=f"C{BRANCHES.index(branch)}",
                                     with_val=False)
    summary = {b: {"val_final": [r["val_final"] for r in runs if r["branch"] == b],
                   "val_jump_at_op": [round(r["val_just_after_op"] - r["val_before_op"], 6)
                                      for r in runs if r["branch"] == b]} for b in BRANCHES}
    for b in BRANCHES:
        v = summary[b]["val_final"]
        summary[b]["mean_val_final"] = round(sum(v) / len(v), 4)
    C.write_results(args, "e10_insert_head", {"fork": FORK, "size": size, "stage_steps": S, "summary": summary,
                                              "runs": runs}, time.perf_counter() - t_start)
    C.plot(args, "e10_insert_head", series, f"e10: control (C0), +1 head (C1), +2 heads (C2), +1 layer (C3) "
           f"after {S} steps", events=[(S, "operation")])


if __name__ == "__main__":
    main()
