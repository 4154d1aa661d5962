"""Deterministic loss of a model over a token sequence, covering it once.

Windows start every T tokens: inputs ids[i*T : i*T+T], targets shifted by one, the last window
shorter if the sequence does not divide evenly, so every token after the first is predicted exactly
once. The result is the mean cross-entropy per predicted token.
"""
import numpy as np


def evaluate_tokens(model, tokens, batch_size=32, max_windows=None, progress=None):
    """(mean loss, number of predicted tokens); max_windows caps the work (None: all): the first
    max_windows windows are evaluated. progress(done, total), if given, after each batch of windows."""
    T = model.hp.num_tokens
    n = len(tokens)
    if n < 2:
        raise ValueError(f"need at least 2 tokens to evaluate, got {n}")
    starts = np.arange(0, n - 1, T)
    if max_windows is not None:
        starts = starts[:max_windows]
    full = starts[starts + T + 1 <= n]
    total, count = 0.0, 0
    for i in range(0, len(full), batch_size):
        if progress is not None:
            progress(i, len(starts))
        s = full[i:i + batch_size]
        windows = tokens[s[:, None] + np.arange(T + 1)].astype(np.int64)
        total += model.mean_loss(windows[:, :-1], windows[:, 1:]) * windows.shape[0] * T
        count += windows.shape[0] * T
    rest = starts[starts + T + 1 > n]
    for s in rest:  # at most one: the tail shorter than a full window
        w = np.asarray(tokens[s:], dtype=np.int64)[None, :]
        total += model.mean_loss(w[:, :-1], w[:, 1:]) * (w.shape[1] - 1)
        count += w.shape[1] - 1
    if progress is not None:
        progress(len(starts), len(starts))
    return total / count, count
