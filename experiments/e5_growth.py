"""e5: growth, log #48/#49: train L4, insert layers one at a time up to L8, vs L8 from scratch.

The fork (#48, Korean text, char tokenizer, E216 H8 T256, 15 hours): 200 steps per layer from L4 to
L13 ended at 1.525 / 1.511 / 1.546, against 1.492 / 1.686 / 1.606 for an L12 trained 2,000 steps
from scratch: "failure, no gain over scratch". #49 (300 steps per layer up to L16) reached 1.059 /
1.063 / 1.112 vs 1.270 / 1.236 / 1.172 for the L4 trained on to 1,300 steps: "kinda works". Its
insert-layer draws the new layer at random and resets the optimizer (warm-up from lr 0).

Ours (Python standard-library source, ascii, E64 H4 T64, no PE): L4 for S steps, then append a
layer (at the end, as incremental-training.py) and train S more, up to L8: 5S steps at growing depth.
Insertions compared: the reference (random + optimizer reset), random with the optimizer kept,
near-identity with the optimizer kept (ours), and near-identity with the LayerNorm gains copied from
the previous layer (a natural guess that breaks the identity). Baselines at equal compute (a step
costs about proportionally to L, so growth spends (4+5+6+7+8) S = 30 S layer-steps): L8 from scratch
for 30S/8 steps, and L4 trained on for 30S/4 steps. Validation loss on held-out source throughout.

    python experiments/e5_growth.py                  # S = 200: ~9-10 minutes on 2 cores
    python experiments/e5_growth.py --smoke
"""
import time

import common as C
from femtogpt.growth.surgery import insert_layer

FORK = {"#48": {"grown_l13": [1.525, 1.511, 1.546], "scratch_l12_2000": [1.492, 1.686, 1.606],
                "verdict": "failure: no gain over scratch"},
        "#49": {"grown_l16": [1.059, 1.063, 1.112], "l4_further_1300": [1.270, 1.236, 1.172],
                "verdict": "kinda works"}}
VARIANTS = {"reference (random + reset)": ("random", True, False),
            "random, optimizer kept": ("random", False, False),
            "near-identity, optimizer kept": ("near-identity", False, False),
            "near-identity, neighbour LN gains": ("near-identity", False, True)}


def configure(p):
    p.add_argument("--stage-steps", type=int, default=200, help="S: steps per depth [200]")
    p.add_argument("--variants", default="all", help="comma-separated subset of: " + ", ".join(VARIANTS))


def copy_neighbour_norms(session, l):
    """Give layer l the LayerNorm gains and biases of layer l-1 (breaks the near-identity)."""
    w = session.model.params.named()
    for part in ("norm", "atten_norm"):
        for kind in ("coeff", "bias"):
            w[f"{part}_{l}_{kind}"][...] = w[f"{part}_{l - 1}_{kind}"]


def grow(args, tok, name, variant, size, S, train_tokens, val_tokens, eval_every, top):
    init, reset, neighbour = variant
    s = C.new_session(tok, L=4, seed=args.seed, **size)
    curve, stages = C.Curve(), []
    for L in range(4, top + 1):
        if L > 4:
            s, _ = insert_layer(s, L - 1, init=init, seed=args.seed + L, reset_optimizer=reset)
            if neighbour:
                copy_neighbour_norms(s, L - 1)
            just_after = C.eval_loss(s, val_tokens)
            curve.events.append((len(curve.train), f"L{L}"))
        else:
            just_after = None
        C.train(s, train_tokens, S, args.seed + 10 * L, curve, val_tokens=val_tokens, eval_every=eval_every,
                label=f"{name} L{L}", print_every=S)
        stages.append({"layers": L, "val_after_insert": just_after, "val_end": curve.val[-1][1],
                       "loss_avg10": curve.tail(), "first_step_loss": curve.train[-S]})
    return {"name": name, "stages": stages, "final_val": curve.val[-1][1], "seconds": curve.seconds,
            "curve": curve.to_json()}, curve


def baseline(args, tok, name, L, steps, size, train_tokens, val_tokens, eval_every):
    s = C.new_session(tok, L=L, seed=args.seed, **size)
    curve = C.train(s, train_tokens, steps, args.seed + 10 * L, val_tokens=val_tokens, eval_every=eval_every,
                    label=name, print_every=max(1, steps // 4))
    return {"name": name, "layers": L, "steps": steps, "final_val": curve.val[-1][1], "loss_avg10": curve.tail(),
            "seconds": curve.seconds, "curve": curve.to_json()}, curve


def compute_axis(series, depths):
    """Re-express the x of curve series (1-based steps) as cumulative layer-steps (compute)."""
    cum, total = [], 0
    for d in depths:
        total += d
        cum.append(total)
    return [{**s, "x": [cum[int(x) - 1] for x in s["x"]]} for s in series]


def main():
    args = C.parse_args(__doc__, configure)
    t_start = time.perf_counter()
    tok = C.tokenizer("ascii")
    if args.smoke:
        size, S, top, eval_every, chars = dict(E=16, H=2, T=16, pos_enc="none"), 3, 6, 3, 30_000
    else:
        size, S, top, eval_every, chars = dict(E=64, H=4, T=64, pos_enc="none"), args.stage_steps, 8, 50, None
    chosen = list(VARIANTS) if args.variants == "all" else [v.strip() for v in args.variants.split(",")]
    code = C.encode(tok, C.code_corpus(chars))
    cut = int(len(code) * 0.95)
    train_tokens, val_tokens = code[:cut], code[cut:]
    layer_steps = sum(range(4, top + 1)) * S
    runs, series = [], []
    for k, name in enumerate(chosen):
        r, curve = grow(args, tok, name, VARIANTS[name], size, S, train_tokens, val_tokens, eval_every, top)
        runs.append(r)
        C.say(f"  -> {name}: final val {r['final_val']:.4f} ({r['seconds']:.0f}s)")
        depths = [4 + i // S for i in range(len(curve.train))]
        series += compute_axis(C.curve_series(curve, name, f"C{k}"), depths)
    baselines = []
    for k, (name, L, steps) in enumerate(((f"L{top} from scratch", top, layer_steps // top),
                                          ("L4 trained on", 4, layer_steps // 4))):
        r, curve = baseline(args, tok, name, L, steps, size, train_tokens, val_tokens, eval_every)
        baselines.append(r)
        C.say(f"  -> {name} ({steps} steps): final val {r['final_val']:.4f} ({r['seconds']:.0f}s)")
        series += compute_axis(C.curve_series(curve, f"{name} ({steps} steps)", f"C{len(chosen) + k}"),
                               [L] * len(curve.train))
    C.write_results(args, "e5_growth", {"fork": FORK, "size": size, "stage_steps": S, "top_layers": top,
                                        "layer_steps": layer_steps, "growth": runs, "baselines": baselines},
                    time.perf_counter() - t_start)
    marks = [sum(range(4, 4 + i)) * S for i in range(1, top - 3)]
    C.plot(args, "e5_growth", series, f"e5: grow L4 -> L{top}, {S} steps per depth, vs baselines",
           events=[(m, f"L{5 + i}") for i, m in enumerate(marks)], xlabel="compute (layer-steps)")


if __name__ == "__main__":
    main()
