"""The sampler: one token id from a logits vector.

Order (documented for users): logits / temperature -> top-k -> top-p -> sample. Temperature 0 is
greedy (argmax, the lowest id on ties); top_k 0 and top_p 1.0 are off. This is the usual softmax
sampling, not the reference's `select` (a dice in [0, temperature) over sorted probabilities); see
femtogpt-fork.md section 1.3.
"""
import numpy as np


def log_probs(logits):
    """log softmax over the last axis, in float64, max-subtracted: the model's next-token log
    probabilities (inspect's logit lens, chunks' losses, infer --show-probs)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def sample_next(logits, temperature=1.0, top_k=0, top_p=1.0, rng=None):
    """One token id from logits (V,): logits / temperature -> top-k -> top-p -> sample.

    temperature 0: greedy, argmax with the lowest id winning ties (top_k, top_p, rng unused).
    top_k > 0 keeps exactly the k largest logits (ties broken towards lower ids); 0 is off.
    top_p < 1 keeps the smallest set of most probable tokens (after top-k, renormalised) whose mass
    is >= top_p (ties broken towards lower ids; top_p 0 keeps one token); 1.0 is off.
    rng: a np.random.Generator (seeded for reproducible output); None draws a fresh one.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if np.isnan(z).any():
        raise ValueError("logits contain NaN")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if not 0.0 <= top_p <= 1.0:
        raise ValueError(f"top_p must be in [0, 1], got {top_p}")
    if temperature == 0:
        return int(np.argmax(z))
    z = z / temperature
    if 0 < top_k < z.size or top_p < 1.0:
        order = np.argsort(-z, kind="stable")  # descending logit, lower id first on ties
        if 0 < top_k < z.size:
            order = order[:top_k]
    else:
        order = np.arange(z.size)              # nothing to cut: id order, no sort
    zk = z[order]
    p = np.exp(zk - zk.max())
    p /= p.sum()
    if top_p < 1.0:
        cum = np.cumsum(p)                     # order is descending, so this is the top mass
        n = int(np.searchsorted(cum, top_p - 1e-12, side="left")) + 1  # tolerance for rounding
        order, p = order[:n], p[:n]
        p = p / p.sum()
    if rng is None:
        rng = np.random.default_rng()
    cum = np.cumsum(p)
    i = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
    return int(order[min(i, order.size - 1)])
