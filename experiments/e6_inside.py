"""e6: looking inside simple_dummy2's model (issue 16): residual RMS and the logit lens over training,
and what insert-layer (near-identity vs random) does to them.

The model is e3's run B: E64 L4 H4, byte tokenizer, T 80, no positional encoding, no dropout. It
solves actions 0 and 9 and none of the copy actions. We train it `--steps` (1,500) steps and, at a
few points, run femtogpt/tools/inside.py's layer_stats (what `femtogpt inspect` prints) over a fixed
set of held-out windows (`--batches` batches of 8, the same windows every time, from a dump that no
training dump equals), and score it per action (200 prompts, greedy). Per layer we keep the residual
RMS leaving it, the attention and feed-forward halves' RMS over the stream they are added to, the
logit lens (the final LayerNorm and head applied after the layer: loss, top-1, confidence), the
attention entropy of each head, and the mean |gain| of the layer's two LayerNorms.

Then, from the final model, a layer is inserted in the middle (index L/2 = 2) twice, near-identity
and random (the same seed), optimizer moments kept; both are inspected right after the insertion
and after `--after-steps` (300) more steps, next to the L4 model trained the same 300 steps on (the
control: what 300 more steps do without an insertion).

    python experiments/e6_inside.py          # ~2 minutes on 2 cores (idle machine)
    python experiments/e6_inside.py --smoke
"""
import time

import numpy as np

import common as C
from femtogpt.growth.surgery import insert_layer
from femtogpt.tools.inside import layer_stats
from femtogpt.train.step import sample_batch

KEEP = ("rms_in", "rms_out", "attn_ratio", "ffn_ratio", "lens_loss", "lens_top1", "lens_confidence")
INITS = ("near-identity", "random")


def configure(p):
    p.add_argument("--steps", type=int, default=1500, help="training steps of the L4 model [1500]")
    p.add_argument("--inspect-at", default="0,250,500,1000,1500",
                   help="steps at which to inspect and score (comma-separated; the last must be --steps)")
    p.add_argument("--after-steps", type=int, default=300, help="steps after each insertion [300]")
    p.add_argument("--batches", type=int, default=8, help="batches of 8 held-out windows to inspect [8]")
    p.add_argument("--samples", type=int, default=200, help="prompts per score [200]")


def compact(stats):
    """The per-layer numbers we keep (mean entropy over heads added; the heads' own too)."""
    layers = []
    for s in stats["layers"]:
        row = {k: round(s[k], 5) for k in KEEP}
        row["entropy_mean"] = round(float(np.mean(s["entropy"])), 5)
        row["entropy"] = [round(e, 4) for e in s["entropy"]]
        layers.append(row)
    return {"layers": layers, "max_entropy": round(stats["max_entropy"], 5), "windows": stats["windows"],
            "tokens": stats["tokens"]}


def actions_row(result):
    return {a: row["accuracy"] for a, row in result["details"]["actions"].items()}


def lines(stats, label):
    C.say(f"  {label}: layer  rms_out  attn/str  ffn/str  lens loss  top-1  conf  entropy  |LN gain|")
    for l, s in enumerate(stats["layers"]):
        C.say(f"    {l:5d} {s['rms_out']:8.3f} {s['attn_ratio']:9.3f} {s['ffn_ratio']:8.3f} {s['lens_loss']:10.4f} "
              f"{100 * s['lens_top1']:5.1f}% {s['lens_confidence']:5.3f} {s['entropy_mean']:8.3f} "
              f"{s['ln_gain_abs']['norm']:.3f}/{s['ln_gain_abs']['atten_norm']:.3f}")


def main():
    args = C.parse_args(__doc__, configure)
    t_start = time.perf_counter()
    tok = C.tokenizer("byte")
    if args.smoke:
        size, at, after, batches, bsize, samples = dict(E=16, L=2, H=2, T=24), [0, 2, 4], 3, 2, 4, 20
    else:
        size, batches, bsize, samples = dict(E=64, L=4, H=4, T=80), args.batches, 8, args.samples
        at, after = sorted({int(x) for x in args.inspect_at.split(",")} | {args.steps}), args.after_steps
        at = [s for s in at if s <= args.steps]
    steps, index = at[-1], size["L"] // 2
    train_tokens = C.dummy_tokens(tok, "simple_dummy2", seed=args.seed)
    val_tokens = C.dummy_tokens(tok, "simple_dummy2", 3000, seed=args.seed + 1000)
    window_batches = [sample_batch(val_tokens, bsize, size["T"], args.seed + 2000, i) for i in range(batches)]

    def inspect(session):
        stats = compact(layer_stats(session.model, window_batches))
        w = session.model.params.named()  # the LayerNorm gains: a layer's attention reads LN(X), scaled by them
        for l, row in enumerate(stats["layers"]):
            row["ln_gain_abs"] = {part: round(float(np.abs(w[f"{part}_{l}_coeff"]).mean()), 5)
                                  for part in ("norm", "atten_norm")}
        return stats

    def window_loss(session):  # the model's own loss on the inspected windows (= the last layer's lens loss)
        return float(np.mean([session.model.mean_loss(ids, t) for ids, t in window_batches]))

    session = C.new_session(tok, pos_enc="none", seed=args.seed, **size)
    C.say(f"e6: {C.describe(session)}, {steps} steps, inspected at {at} on {batches} x {bsize} windows")
    curve, points = C.Curve(), []
    for k, step in enumerate(at):
        if step > len(curve.train):
            C.train(session, train_tokens, step - len(curve.train), args.seed, curve, val_tokens=val_tokens,
                    eval_every=step - len(curve.train), label=f"L{size['L']}", print_every=250)
        t0 = time.perf_counter()
        stats = inspect(session)
        r = C.score(session, "simple_dummy2", samples, args.seed + 1)
        point = {"step": step, "val": C.eval_loss(session, val_tokens), "window_loss": window_loss(session),
                 "loss_avg10": curve.tail(), "score": r["score"], "actions": actions_row(r), "stats": stats,
                 "seconds_inspect_score": round(time.perf_counter() - t0, 2)}
        points.append(point)
        C.say(f"  step {step}: val {point['val']:.4f}, mean per-action {r['score']:.3f}, "
              + " ".join(f"{a}:{(v or 0):.2f}" for a, v in point["actions"].items()))
        lines(stats, f"step {step}")
    final_stats = points[-1]["stats"]

    # insert a layer in the middle, near-identity and random, and train each on; the L4 control last
    inserts, curves = [], {}
    for init in INITS:
        grown, report = insert_layer(session, index, init=init, seed=args.seed + 7)
        just = {"val": C.eval_loss(grown, val_tokens), "window_loss": window_loss(grown), "stats": inspect(grown)}
        lines(just["stats"], f"{init} at {index}, just after")
        c = C.Curve()
        C.train(grown, train_tokens, after, args.seed, c, val_tokens=val_tokens, eval_every=max(1, after // 6),
                label=f"{init} L{size['L'] + 1}", print_every=100)
        r = C.score(grown, "simple_dummy2", samples, args.seed + 1)
        later = {"val": C.eval_loss(grown, val_tokens), "window_loss": window_loss(grown), "stats": inspect(grown),
                 "loss_avg10": c.tail(), "first_step_loss": c.train[0], "score": r["score"], "actions": actions_row(r)}
        lines(later["stats"], f"{init} at {index}, after {after} steps")
        C.say(f"  {init}: val {points[-1]['val']:.4f} -> {just['val']:.4f} (just after) -> {later['val']:.4f} "
              f"({after} steps); score {r['score']:.3f}")
        inserts.append({"init": init, "index": index, "seed": report.seed, "optimizer": report.optimizer,
                        "val_before": points[-1]["val"], "just_after": just, "after": later,
                        "curve": c.to_json()})
        curves[init] = c
    c = C.Curve()
    C.train(session, train_tokens, after, args.seed, c, val_tokens=val_tokens, eval_every=max(1, after // 6),
            label=f"L{size['L']} control", print_every=100)
    r = C.score(session, "simple_dummy2", samples, args.seed + 1)
    control = {"val": C.eval_loss(session, val_tokens), "window_loss": window_loss(session), "stats": inspect(session),
               "loss_avg10": c.tail(), "first_step_loss": c.train[0], "score": r["score"], "actions": actions_row(r),
               "curve": c.to_json()}
    lines(control["stats"], f"L{size['L']} control after {after} more steps")
    curves["no insertion (control)"] = c

    # what the insertion changed in the layers that were there before (old l -> new l or l + 1)
    def moved(stats_new, stats_old):
        out = {}
        for key in ("rms_out", "lens_loss", "lens_top1", "lens_confidence", "attn_ratio", "ffn_ratio", "entropy_mean"):
            out[key] = [round(stats_new["layers"][l + (l >= index)][key] - stats_old["layers"][l][key], 6)
                        for l in range(size["L"])]
        return out

    for ins in inserts:
        ins["change_of_old_layers_just_after"] = moved(ins["just_after"]["stats"], final_stats)
    C.write_results(args, "e6_inside", {
        "size": size, "steps": steps, "inspect_at": at, "inspected_windows": batches * bsize,
        "window_seed": args.seed + 2000, "samples": samples, "insert_index": index, "after_steps": after,
        "training": points, "curve": curve.to_json(), "inserts": inserts, "control": control},
        time.perf_counter() - t_start)
    figure(args, size, index, after, points, inserts, control, curves)


def figure(args, size, index, after, points, inserts, control, curves):
    from femtogpt.atomic import write_atomically
    from femtogpt.tools.plotting import have_matplotlib, require_matplotlib

    if not have_matplotlib():
        C.say("matplotlib not installed: no picture (pip install 'femtogpt[plot]')")
        return None
    plt = require_matplotlib()
    L = size["L"]
    xs = [p["step"] for p in points]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), dpi=100)
    (rms, lens, ent), (irms, ilens, iloss) = axes
    for l in range(L):
        col = f"C{l}"
        layer = [p["stats"]["layers"][l] for p in points]
        rms.plot(xs, [s["rms_out"] for s in layer], "o-", color=col, label=f"layer {l}")
        lens.plot(xs, [s["lens_top1"] for s in layer], "o-", color=col, label=f"layer {l} top-1")
        lens.plot(xs, [s["lens_confidence"] for s in layer], "s:", color=col, alpha=0.7, label=f"layer {l} confidence")
        ent.plot(xs, [s["entropy_mean"] for s in layer], "o-", color=col, label=f"layer {l}")
    rms.plot(xs, [p["stats"]["layers"][0]["rms_in"] for p in points], "k--", label="embedding (rms in of 0)")
    rms.set_title("residual RMS leaving each layer")
    lens.set_title("logit lens after each layer: top-1 (o-), confidence (s:)")
    lens.set_ylim(0, 1)
    ent.axhline(points[0]["stats"]["max_entropy"], color="black", linestyle="--", linewidth=0.8)
    ent.set_title(f"mean attention entropy per layer (zoomed)\n(dashed: uniform attention, "
                  f"{points[0]['stats']['max_entropy']:.3f} nats)", fontsize=10)
    acc = ent.twinx()
    acc.plot(xs, [p["score"] for p in points], "k^-", alpha=0.5, label="mean per-action score")
    acc.set_ylim(0, 1)
    acc.set_ylabel("mean per-action score (200 prompts)")
    acc.legend(fontsize=7, loc="center right")
    for ax in (rms, lens, ent):
        ax.set_xlabel("step")
        ax.legend(fontsize=7, ncol=2 if ax is lens else 1)
        ax.grid(alpha=0.3)
    # the insertion: per layer of the grown model; the L4 model's layers drawn where they moved to
    old_x = [l + (l >= index) for l in range(L)]
    new_x = list(range(L + 1))
    base = points[-1]["stats"]["layers"]
    styles = {"near-identity": "C0", "random": "C3"}
    for ax, key, title in ((irms, "rms_out", "residual RMS per layer"),
                           (ilens, "lens_loss", "logit-lens loss per layer")):
        ax.plot(old_x, [s[key] for s in base], "ko-",
                label=f"L{L}, step {points[-1]['step']} (at the layers' new index)")
        ax.plot(old_x, [s[key] for s in control["stats"]["layers"]], "k^:", alpha=0.6, label=f"L{L}, +{after} steps")
        for ins in inserts:
            col = styles[ins["init"]]
            ax.plot(new_x, [s[key] for s in ins["just_after"]["stats"]["layers"]], "o--", color=col,
                    label=f"{ins['init']}, just after")
            ax.plot(new_x, [s[key] for s in ins["after"]["stats"]["layers"]], "s-", color=col, alpha=0.7,
                    label=f"{ins['init']}, +{after} steps")
        ax.axvline(index, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"insert at {index}: {title}")
        ax.set_xlabel(f"layer (of the L{L + 1} model; the new one at {index})")
        ax.legend(fontsize=7, loc="lower left", ncol=2)
        ax.grid(alpha=0.3)
    irms.set_yscale("log")
    irms.set_ylim(bottom=min(irms.get_ylim()[0], 0.002))  # room for the legend below the points
    ilens.set_ylim(0, ilens.get_ylim()[1])
    from matplotlib.ticker import MaxNLocator

    for ax in (irms, ilens):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    from femtogpt.tools.plotting import smooth

    for (label, c), col in zip(curves.items(), ("C0", "C3", "k")):
        iloss.plot(range(1, len(c.train) + 1), smooth(c.train, 10), "-", color=col, alpha=0.8, label=f"{label}")
        iloss.plot([s for s, _ in c.val], [v for _, v in c.val], "o--", color=col, alpha=0.7)
    iloss.axhline(points[-1]["val"], color="grey", linestyle=":", linewidth=1)
    top = min(2.3, max(max(c.train) for c in curves.values()))
    iloss.set_ylim(min(min(c.train) for c in curves.values()) - 0.05, top)
    iloss.set_title(f"after the insertion: training loss (avg 10), validation (o)\n"
                    f"(dotted: validation before; clipped at {top:.2f}; random's first loss: "
                    f"{curves['random'].train[0]:.2f})", fontsize=10)
    iloss.set_xlabel("steps after the insertion")
    iloss.legend(fontsize=7)
    iloss.grid(alpha=0.3)
    fig.suptitle(f"e6: inside simple_dummy2's E{size['E']} L{L} H{size['H']} model (held-out windows)")
    fig.tight_layout()
    out = args.out_dir / "e6_inside.png"
    try:
        write_atomically(out, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
    C.say(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
