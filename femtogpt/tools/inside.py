"""What a model does inside, layer by layer, on real text (`femtogpt inspect`).

From forward traces (model/trace.py: the very ops that train, no dropout), averaged over windows of a
dataset, per layer l (X_l: the residual stream entering it, N_l = LN(X_l) what it reads, M_l the
LayerNorm after the attention half; model/block.py):
- rms_in, rms_out      RMS of X_l and X_{l+1}
- attn_rms, attn_ratio the attention half's output (O @ proj_w + proj_b) and its RMS over that of N_l,
                       the stream it is added to (M_l = LN(N_l + attn))
- ffn_rms, ffn_ratio   the feed-forward half's output and its RMS over that of M_l (X_{l+1} = M_l + ffn)
- entropy[h]           the attention entropy of head h in nats, averaged over positions; a position t
                       can attend to t + 1 tokens, so its most spread-out value is ln(t + 1), and
                       `max_entropy` is that averaged over positions (1.0 of it: uniform attention)
- lens_loss, lens_top1, lens_confidence
                       the logit lens: the final LayerNorm and head applied to X_{l+1}, scored against
                       the next tokens: cross-entropy, top-1 accuracy, mean probability of the top
                       token. After the last layer this is the model's own prediction.
All sums are in float64 over every position of every window.
"""
import numpy as np

from femtogpt.model.sampling import log_probs

EPS = 1e-5  # the engine's LayerNorm epsilon (engine/ops/layernorm.py)


def layer_stats(model, batches):
    """{"layers": [per-layer dict, see the module docstring], "max_entropy": float, "windows", "tokens"}
    over `batches`, an iterable of (ids, targets) arrays (B, T)."""
    hp = model.hp
    L, NH = hp.num_layers, hp.num_heads
    w = model.params.values.views
    gamma, beta = (np.asarray(w[f"head_norm_{k}"], np.float64) for k in ("coeff", "bias"))
    sums = {k: np.zeros(L) for k in ("sq_in", "sq_out", "sq_attn", "sq_n", "sq_ffn", "sq_mid",
                                     "lens_nll", "lens_top1", "lens_conf")}
    entropy, max_entropy = np.zeros((L, NH)), 0.0
    rows = windows = 0
    for ids, targets in batches:
        tr = model.forward_trace(ids, attention=True)
        B, T = ids.shape
        rows, windows = rows + B * T, windows + B
        sq = lambda a: np.square(a.astype(np.float64)).mean(axis=-1).sum(axis=(1, 2))  # noqa: E731  (L,)
        sums["sq_in"] += sq(tr.resid[:-1])
        sums["sq_out"] += sq(tr.resid[1:])
        sums["sq_attn"] += sq(tr.attn)
        sums["sq_n"] += sq(tr.normed[:-1])
        sums["sq_ffn"] += sq(tr.ffn)
        sums["sq_mid"] += sq(tr.mid)
        p = tr.probs.astype(np.float64)                           # (L, B, NH, T, T)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(p), 0.0)
        entropy += -plogp.sum(axis=-1).sum(axis=(1, 3))           # (L, NH): summed over B and T
        max_entropy += B * np.log(np.arange(1, T + 1)).sum()
        for l in range(L):
            nll, top1, conf = _lens(model, tr.resid[l + 1], gamma, beta, targets)
            sums["lens_nll"][l] += nll
            sums["lens_top1"][l] += top1
            sums["lens_conf"][l] += conf
    if not rows:
        raise ValueError("no windows to inspect")
    layers = []
    for l in range(L):
        rms = {k: float(np.sqrt(sums[k][l] / rows)) for k in ("sq_in", "sq_out", "sq_attn", "sq_n", "sq_ffn", "sq_mid")}
        layers.append({
            "layer": l, "rms_in": rms["sq_in"], "rms_out": rms["sq_out"],
            "attn_rms": rms["sq_attn"], "attn_ratio": rms["sq_attn"] / max(rms["sq_n"], 1e-30),
            "ffn_rms": rms["sq_ffn"], "ffn_ratio": rms["sq_ffn"] / max(rms["sq_mid"], 1e-30),
            "entropy": [float(e / rows) for e in entropy[l]],
            "lens_loss": float(sums["lens_nll"][l] / rows), "lens_top1": float(sums["lens_top1"][l] / rows),
            "lens_confidence": float(sums["lens_conf"][l] / rows),
        })
    return {"layers": layers, "max_entropy": float(max_entropy / rows), "windows": windows, "tokens": rows}


def _lens(model, x, gamma, beta, targets):
    """(summed cross-entropy, correct top-1 count, summed top probability) of head(LN_head(x))."""
    x = x.astype(np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mean).mean(axis=-1, keepdims=True)
    n = (x - mean) / np.sqrt(var + EPS) * gamma + beta
    logp = log_probs(model.head(n.astype(model.dtype)))   # (B, T, V), from the model's own head product
    t = np.asarray(targets).reshape(logp.shape[:-1])
    nll = -np.take_along_axis(logp, t[..., None], axis=-1).sum()
    top = logp.argmax(axis=-1)
    return float(nll), float((top == t).sum()), float(np.exp(logp.max(axis=-1)).sum())


def table_lines(stats):
    """The human form of layer_stats: one table per view, each line at most 80 columns."""
    lines = [f"{stats['windows']} windows, {stats['tokens']:,} positions",
             "layer rms in rms out  attn (/stream)   ffn (/stream)  lens loss  top-1  conf"]
    for s in stats["layers"]:
        lines.append(f"{s['layer']:5d} {s['rms_in']:6.3f} {s['rms_out']:7.3f} "
                     f"{s['attn_rms']:6.3f} ({s['attn_ratio']:5.2f}) {s['ffn_rms']:7.3f} ({s['ffn_ratio']:5.2f}) "
                     f"{s['lens_loss']:9.4f} {100 * s['lens_top1']:5.1f}% {s['lens_confidence']:5.3f}")
    heads = len(stats["layers"][0]["entropy"]) if stats["layers"] else 0
    lines.append(f"attention entropy per head, nats (uniform attention: {stats['max_entropy']:.3f})")
    for first in range(0, heads, 8):  # 8 heads a line keep it within 80 columns
        shown = range(first, min(heads, first + 8))
        lines.append("layer " + "".join(f"  head {h:<2d}" for h in shown))
        for s in stats["layers"]:
            lines.append(f"{s['layer']:5d} " + "".join(f"{s['entropy'][h]:10.3f}" for h in shown))
    return lines
