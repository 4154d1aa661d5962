"""Loss-curve pictures (PNG) from model logs or from experiment series; matplotlib is optional.

matplotlib is imported only inside `require_matplotlib`, with the Agg backend (no display needed);
without it the caller gets PlotUnavailable with a one-line install hint. The x axis of a model's
curve counts every trained step across sessions, so a run that inserted a layer (which restarts
the optimizer's step) still reads left to right; layer insertions are drawn as dotted lines. The
PNG is written atomically (femtogpt/atomic.py).
"""
from pathlib import Path

from femtogpt.atomic import write_atomically
from femtogpt.io.logs import EVAL, INSERT_HEAD, INSERT_LAYER, TRAIN_STEP, timeline
X_AXES = {"step": "steps trained", "time": "training seconds", "tokens": "tokens trained on"}

INSTALL_HINT = "matplotlib is not installed: pip install 'femtogpt[plot]' (or pip install matplotlib)"


class PlotUnavailable(RuntimeError):
    pass


class UnsupportedFormat(ValueError):
    """The output file's extension names a format matplotlib cannot write (a fault of the output path)."""


def require_matplotlib():
    """matplotlib.pyplot on the Agg backend, or PlotUnavailable with the install hint."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(INSTALL_HINT) from None
    return plt


def have_matplotlib():
    try:
        require_matplotlib()
    except PlotUnavailable:
        return False
    return True


def curves_from_logs(logs, x="step", num_tokens=0):
    """{"train": (x, loss), "val": (x, val_loss), "events": [(x, label)]} from a model's logs; x
    counts, across sessions and insertions (io/logs.timeline): the steps trained ("step"), the
    seconds they took ("time") or the tokens they trained on ("tokens"; num_tokens: the context
    length, for files whose sessions do not record their tokens per step)."""
    which = {"step": 1, "time": 2, "tokens": 3}[x]
    tx, ty, vx, vy, events = [], [], [], [], []
    for log, *totals in timeline(logs, num_tokens):
        at = totals[which - 1]
        kind = log.get("kind")
        if kind == TRAIN_STEP:
            tx.append(at)
            ty.append(float(log["loss"]))
        elif kind == EVAL:
            vx.append(at)
            vy.append(float(log["val_loss"]))
        elif kind == INSERT_LAYER:
            events.append((at, f"insert@{log.get('index', '?')}"))
        elif kind == INSERT_HEAD:
            events.append((at, f"+head{log.get('head', '?')}"))
    return {"train": (tx, ty), "val": (vx, vy), "events": events}


def smooth(values, window):
    """Trailing moving average over `window` points (the first points average what exists)."""
    if window <= 1 or not values:
        return list(values)
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_series(series, out, title=None, xlabel="step", ylabel="loss", events=(), hlines=()):
    """Draw line series to a PNG. series: dicts with "x", "y", "label" and optionally "style"
    (a matplotlib format such as "--"), "alpha", "color". events: (x, label) vertical dotted lines;
    hlines: (y, label) horizontal reference lines (e.g. a fork's final loss)."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for s in series:
        kw = {k: s[k] for k in ("alpha", "color", "linewidth") if k in s}
        ax.plot(s["x"], s["y"], s.get("style", "-"), label=s.get("label"), **kw)
    for x, label in events:
        ax.axvline(x, color="grey", linestyle=":", linewidth=1)
        ax.annotate(label, (x, 1), xycoords=("data", "axes fraction"), fontsize=7, rotation=90,
                    va="top", ha="right", color="grey")
    for y, label in hlines:
        ax.axhline(y, color="black", linestyle="--", linewidth=0.8)
        ax.annotate(label, (0, y), xycoords=("axes fraction", "data"), fontsize=7, va="bottom")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if any(s.get("label") for s in series):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, out)


def _save(plt, fig, out):
    """Write `fig` to `out` atomically in the format its extension names; the figure is closed."""
    fig.tight_layout()
    fmt = Path(out).suffix[1:].lower() or plt.rcParams["savefig.format"]   # as savefig(path) picks it
    supported = fig.canvas.get_supported_filetypes()
    try:
        if fmt not in supported:
            raise UnsupportedFormat(f"Format {fmt!r} is not supported (supported formats: {', '.join(sorted(supported))})")
        write_atomically(out, lambda f: fig.savefig(f, format=fmt))
    finally:
        plt.close(fig)
    return out


def plot_layer_stats(stats, out, title=None):
    """`femtogpt inspect --plot`: tools/inside.py's layer_stats as three panels: the residual stream's
    RMS and the halves' ratios to it, the logit lens per layer, and attention entropy per head."""
    plt = require_matplotlib()
    layers = stats["layers"]
    x = [s["layer"] for s in layers]
    fig, (rms, lens, ent) = plt.subplots(1, 3, figsize=(13, 4), dpi=110)
    rms.plot(x, [s["rms_in"] for s in layers], "o-", label="residual in")
    rms.plot(x, [s["rms_out"] for s in layers], "o-", label="residual out")
    rms.plot(x, [s["attn_ratio"] for s in layers], "s--", label="attn / stream")
    rms.plot(x, [s["ffn_ratio"] for s in layers], "s--", label="ffn / stream")
    rms.set_title("RMS per layer")
    lens.plot(x, [s["lens_loss"] for s in layers], "o-", color="C3", label="lens loss")
    acc = lens.twinx()
    acc.plot(x, [s["lens_top1"] for s in layers], "o--", color="C2", label="top-1")
    acc.plot(x, [s["lens_confidence"] for s in layers], "o:", color="C4", label="confidence")
    lens.set_title("logit lens after each layer")
    acc.legend(fontsize=8, loc="center right")
    image = ent.imshow([s["entropy"] for s in layers], aspect="auto", cmap="viridis", vmin=0,
                       vmax=stats["max_entropy"])
    ent.set_title(f"attention entropy (max {stats['max_entropy']:.2f} nats)")
    ent.set_xlabel("head")
    fig.colorbar(image, ax=ent)
    from matplotlib.ticker import MaxNLocator

    for ax in (rms, lens, ent):
        ax.set_xlabel(ax.get_xlabel() or "layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ent.yaxis.set_major_locator(MaxNLocator(integer=True))
    rms.legend(fontsize=8)
    lens.legend(fontsize=8, loc="upper right")
    ent.set_ylabel("layer")
    if title:
        fig.suptitle(title)
    return _save(plt, fig, out)


def distinct_labels(paths):
    """A short label per path, all different: the file name, or as many trailing folders as it takes
    (two model.dat files in runs/a and runs/b are a/model.dat and b/model.dat)."""
    parts = [Path(p).resolve().parts for p in paths]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashing = [i for i, label in enumerate(labels) if labels.count(label) > 1 and depth[i] < len(parts[i])]
        if not clashing:
            return labels  # (the same file given twice keeps its full path twice)
        for i in clashing:
            depth[i] += 1


def plot_models(models, out, smooth_window=1, title=None, x="step"):
    """One PNG of the training (and validation) loss of each (label, logs, num_tokens) in `models`,
    against `x` (see curves_from_logs). Returns the number of training steps drawn; raises ValueError
    if no model has any."""
    series, events, total = [], [], 0
    colors = [f"C{i}" for i in range(10)]
    for i, (label, logs, num_tokens) in enumerate(models):
        c = curves_from_logs(logs, x, num_tokens)
        (tx, ty), (vx, vy) = c["train"], c["val"]
        total += len(tx)
        color = colors[i % len(colors)]
        if tx:
            series.append({"x": tx, "y": smooth(ty, smooth_window), "label": f"{label} train",
                           "color": color})
        if vx:
            series.append({"x": vx, "y": vy, "style": "o--", "label": f"{label} validation",
                           "color": color, "alpha": 0.8})
        events += [(x, f"{label}: {e}" if len(models) > 1 else e) for x, e in c["events"]]
    if total == 0:
        raise ValueError("no training steps in the logs: nothing to plot")
    plot_series(series, out, title=title, events=events, xlabel=X_AXES[x])
    return total
