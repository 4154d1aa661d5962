"""Rotary position embedding (RoPE, Su et al. 2021) on the queries and keys of fused qkv rows.

qkv rows (N, 3W), W = NH*hs: columns [0, W) the queries, [W, 2W) the keys, [2W, 3W) the values, head h
at h*hs..(h+1)*hs of each block (engine/ops/attention.py). Row r is at position t = p0 + r % T (the
tape: sequences of T rows, p0 = 0; the KV cache: one sequence's new rows, T = n, p0 = the window
position of the first). In every head of Q and K, the pair of columns (2i, 2i+1) is rotated by
t * theta_i, theta_i = base^(-2i/hs), base 10000, i = 0..hs/2-1:
    out[2i]   = x[2i] cos - x[2i+1] sin
    out[2i+1] = x[2i] sin + x[2i+1] cos
The values are copied unchanged. Then q_t . k_s depends on t - s only: attention sees relative
positions, and no parameter is added.
backward: a rotation's transpose is its inverse, so dqkv = dout rotated by -t * theta_i in Q and K,
dout itself in V.

Pairing: interleaved (2i, 2i+1), as in the RoFormer paper and as the reference's own sinusoidal table
pairs its columns (i = c // 2 for sin at even c and cos at odd c), not GPT-NeoX's split halves
(i, i + hs/2). The two are the same model up to a fixed permutation of each head's q and k columns
(a model trained with one is not the other's, though): interleaved keeps a pair in adjacent columns,
in the order the per-head tensors head_{l}_{h}_q/k store them. An odd head size has no pairing:
Hyperparameters.validate refuses it for rotary.

Not here: the cos/sin tables' owner (model/gpt.py builds them once per model, `rope_tables`) and where
the op sits in the layer (model/tape.py and model/kv_cache.py, inside their `attention`).
"""
import numpy as np
from numba import prange

from femtogpt.engine.runtime import kernel

from femtogpt.engine.autograd import Function

ROPE_BASE = 10000.0


def rope_tables(T, hs, dtype=np.float32, base=ROPE_BASE):
    """(cos, sin), each (T, hs/2): entry [t, i] of the angle t * base^(-2i/hs), computed in float64
    and rounded once to `dtype` (the same bits whatever the thread count or the batch)."""
    if hs % 2:
        raise ValueError(f"rotary position encoding needs an even head size, got {hs}")
    theta = base ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)    # (hs/2,)
    angle = np.arange(T, dtype=np.float64)[:, None] * theta[None, :]  # (T, hs/2)
    return np.cos(angle).astype(dtype), np.sin(angle).astype(dtype)


@kernel(inline="always")
def _rotate_row(out, inp, r, t, cos, sin, W, sign):
    # out[r] = inp[r] with Q and K rotated by sign * t * theta (sign 1: forward, -1: the inverse)
    half = cos.shape[1]
    hs = 2 * half
    for base in range(0, 2 * W, hs):  # every head of Q, then of K
        for i in range(half):
            c, s = cos[t, i], sin[t, i]
            if sign < 0:
                s = -s  # negated, not multiplied: the arithmetic stays in the tables' dtype
            x0, x1 = inp[r, base + 2 * i], inp[r, base + 2 * i + 1]
            out[r, base + 2 * i] = x0 * c - x1 * s
            out[r, base + 2 * i + 1] = x0 * s + x1 * c
    for j in range(2 * W, inp.shape[1]):
        out[r, j] = inp[r, j]


@kernel(parallel=True)
def rotary_forward(out, qkv, cos, sin, T, p0):
    # qkv, out: (N, 3W); cos, sin: (Tmax, hs/2) with p0 + T <= Tmax; row r at position p0 + r % T
    W = qkv.shape[1] // 3
    for r in prange(qkv.shape[0]):  # each row owned by one iteration: no result depends on threads
        _rotate_row(out, qkv, r, p0 + r % T, cos, sin, W, 1)


@kernel(parallel=True)
def rotary_backward(dqkv, dout, cos, sin, T, p0):
    # dqkv: (N, 3W) written (not accumulated): the inverse rotation of dout, dout's V part as it is
    W = dout.shape[1] // 3
    for r in prange(dout.shape[0]):
        _rotate_row(dqkv, dout, r, p0 + r % T, cos, sin, W, -1)


class Rotary(Function):
    """inputs: qkv (B*T, 3W), cos and sin (T', hs/2) from rope_tables with T' >= T (no gradient).
    T: positions per sequence (the rows of one batch element)."""

    def __init__(self, T):
        self.T = T

    def forward(self, qkv, cos, sin):
        N, width = qkv.shape
        half = cos.shape[1]
        if width % 3 or (width // 3) % (2 * half) or N % self.T or cos.shape[0] < self.T:
            raise ValueError(f"rotary: qkv {qkv.shape} does not fit T = {self.T} and tables {cos.shape}")
        out = self.buffer("out", (N, width), qkv.dtype)
        rotary_forward(out, qkv, cos, sin, self.T, 0)
        self.cos, self.sin = cos, sin
        return out

    def backward(self, dout):
        dqkv = self.grad_buffer("dqkv", dout.shape, dout.dtype)
        rotary_backward(dqkv, dout, self.cos, self.sin, self.T, 0)
        return dqkv, None, None
