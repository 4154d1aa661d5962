"""Deterministic loss of a model over a token sequence, covering it once.

Windows start every T tokens: inputs ids[i*T : i*T+T], targets shifted by one, the last window
shorter if the sequence does not divide evenly, so every token after the first is predicted exactly
once. The result is the mean cross-entropy per predicted token.

The windows go through the model in batches; each batch's summed loss is added to the total in batch
order. Under mpiexec (`group`, train/distributed.py) each process takes a contiguous share of the
batches and process 0 adds all of them in the same order, so K processes give the bits of one.
"""
import numpy as np


def evaluate_tokens(model, tokens, batch_size=32, max_windows=None, progress=None, group=None):
    """(mean loss, number of predicted tokens); max_windows caps the work (None: all): the first
    max_windows windows are evaluated. progress(done, total), if given, after each batch of windows
    (with a group: this process's batches). Every process of a group gets the same result."""
    T = model.hp.num_tokens
    n = len(tokens)
    if n < 2:
        raise ValueError(f"need at least 2 tokens to evaluate, got {n}")
    starts = np.arange(0, n - 1, T)
    if max_windows is not None:
        starts = starts[:max_windows]
    full = starts[starts + T + 1 <= n]
    batches = [full[i:i + batch_size] for i in range(0, len(full), batch_size)]
    batches += [s for s in starts[starts + T + 1 > n]]  # at most one: the tail shorter than a full window
    first, end = (0, len(batches)) if group is None else group.unit_range(len(batches))
    parts = []  # (summed loss, predicted tokens) of this process's batches, in order
    for k in range(first, end):
        if progress is not None:
            progress(k - first, end - first)
        parts.append(_batch_loss(model, tokens, batches[k], T))
    if progress is not None:
        progress(end - first, end - first)
    if group is not None:
        parts = group.all_losses(parts)
    total, count = 0.0, 0
    for loss, predicted in parts:  # one fixed order, whatever computed them
        total += loss
        count += predicted
    return total / count, count


def _batch_loss(model, tokens, batch, T):
    """(summed loss, predicted tokens) of a batch: an array of full-window starts, or one tail start."""
    if np.ndim(batch) == 0:
        w = np.asarray(tokens[batch:], dtype=np.int64)[None, :]
        return model.mean_loss(w[:, :-1], w[:, 1:]) * (w.shape[1] - 1), w.shape[1] - 1
    windows = tokens[batch[:, None] + np.arange(T + 1)].astype(np.int64)
    return model.mean_loss(windows[:, :-1], windows[:, 1:]) * windows.shape[0] * T, windows.shape[0] * T
