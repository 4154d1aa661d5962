"""Causal multi-head self-attention: the four products through batched BLAS, the rest fused.

Input qkv: (B*T, 3C), C = NH*hs the attention width (the model's E unless insert-head grew it; the op
reads C and hs from qkv's width), the rows of one batch element contiguous; columns [0, C) hold the queries,
[C, 2C) the keys and [2C, 3C) the values, head h at columns h*hs..(h+1)*hs of each block (the
reference's per-head tensors head_{l}_{h}_q/k/v side by side). Output: (B*T, C), head h's result at
columns h*hs..(h+1)*hs (the reference's concatenation order).
    S = (Q K^T) * hs^-0.5 (the fork's orientation), S[i, j] = -inf for j > i,
    P = softmax(S), O = dropout(P) V.
Q, K, V and O are strided (B, NH, T, hs) views of the row-major arrays, which BLAS reads and
writes in place, so no head is ever copied out. The products run over whole [T, T] tiles (the
masked half costs flops but BLAS is several times faster than any loop of ours at these sizes);
one Numba kernel then scales, masks, normalises and drops out each row. Forward keeps P
(B*NH, T, T) for backward; the dropout mask is a hash of (key, index), recomputed when needed.
Every (batch, head) tile is computed on its own, so no result depends on the thread count.
"""
import numpy as np
from numba import prange

from femtogpt.engine.runtime import kernel

from femtogpt.engine.autograd import Function
from femtogpt.engine.ops.dropout import kept
from femtogpt.engine.ops.fastmath import exp_minus_max
from femtogpt.engine.ops.matmul import batched_gemm


@kernel(inline="always")
def _drop_row(Pd, P, bh, i, T, key, p, keep):
    # Pd[bh, i] = P[bh, i] with the dropped entries zeroed and the kept ones scaled by 1/(1-p)
    zero = keep - keep
    for j in range(T):
        Pd[bh, i, j] = P[bh, i, j] * keep if kept(key, (bh * T + i) * T + j, p) else zero


@kernel(parallel=True, fastmath={"reassoc", "contract"})
def causal_softmax(S, Pd, key, p, scale, fast):
    # S: (BH, T, T) raw scores in, probabilities out (zero above the diagonal);
    # Pd: dropout(P) when p > 0 (unused otherwise); p, scale: S's dtype
    BH, T = S.shape[0], S.shape[1]
    zero = scale - scale
    keep = (scale / scale) / ((scale / scale) - p)
    for bh in prange(BH):
        bits = np.empty(T, np.int32)
        for i in range(T):
            row = S[bh, i]
            n = i + 1
            for j in range(n):
                row[j] *= scale
            exp_minus_max(row, n, bits, fast)
            tot = zero
            for j in range(n):
                tot += row[j]
            inv = (scale / scale) / tot
            for j in range(n):
                row[j] *= inv
            for j in range(n, T):
                row[j] = zero
            if p > zero:
                _drop_row(Pd, S, bh, i, T, key, p, keep)


@kernel(parallel=True)
def dropped_probs(Pd, P, key, p):
    # Pd = dropout(P), the same mask as the forward's
    BH, T = P.shape[0], P.shape[1]
    keep = (p / p) / ((p / p) - p)
    for bh in prange(BH):
        for i in range(T):
            _drop_row(Pd, P, bh, i, T, key, p, keep)


@kernel(parallel=True, fastmath={"reassoc", "contract"})
def causal_softmax_backward(dS, P, key, p, scale):
    # dS: (BH, T, T) holds d(dropout(P)) in and d(S) out, zero above the diagonal
    BH, T = P.shape[0], P.shape[1]
    zero = scale - scale
    keep = (scale / scale) / ((scale / scale) - p)
    for bh in prange(BH):
        for i in range(T):
            n = i + 1
            dot = zero
            for j in range(n):
                g = dS[bh, i, j]
                if p > zero:
                    g = g * keep if kept(key, (bh * T + i) * T + j, p) else zero
                dS[bh, i, j] = g  # now dP[i, j], through the dropout mask
                dot += P[bh, i, j] * g
            for j in range(n):
                dS[bh, i, j] = P[bh, i, j] * (dS[bh, i, j] - dot) * scale
            for j in range(n, T):
                dS[bh, i, j] = zero


def _heads(a, T, NH, part):
    """(B, NH, T, hs) view of block `part` (0 = q, 1 = k, 2 = v) of a (B*T, 3C) array, or of a
    (B*T, C) array when part is None."""
    # a reshape of a non-contiguous array would be a copy, and products written into it lost
    assert a.flags.c_contiguous, "attention works on C-contiguous (rows, columns) arrays"
    B = a.shape[0] // T
    if part is None:
        return a.reshape(B, T, NH, -1).transpose(0, 2, 1, 3)
    return a.reshape(B, T, 3, NH, -1)[:, :, part].transpose(0, 2, 1, 3)


class CausalSelfAttention(Function):
    """inputs: qkv (B*T, 3C); output (B*T, C). T and NH fixed at construction; per call: dropout p on
    the probabilities, its masks keyed by `key`."""

    def __init__(self, T, num_heads):
        self.T, self.NH = T, num_heads

    def _scalars(self, dtype):
        hs = self.qkv.shape[1] // 3 // self.NH
        return dtype.type(self.p), dtype.type(1.0 / np.sqrt(hs))

    def _dropped(self, P, dtype):
        """dropout(P) in a scratch buffer (dead once the caller's product is done), or P itself."""
        if self.p == 0.0:
            return P
        Pd = self.grad_buffer("Pd", P.shape, dtype)
        dropped_probs(Pd, P, np.uint64(self.key), dtype.type(self.p))
        return Pd

    def forward(self, qkv, p=0.0, key=0):
        self.p, self.key = float(p), int(key)
        N, C3 = qkv.shape
        T, NH = self.T, self.NH
        B = N // T
        out = self.buffer("out", (N, C3 // 3), qkv.dtype)
        self.P = P = self.buffer("P", (B * NH, T, T), qkv.dtype)
        self.qkv = qkv
        p, scale = self._scalars(qkv.dtype)
        S4 = P.reshape(B, NH, T, T)
        batched_gemm(_heads(qkv, T, NH, 0), _heads(qkv, T, NH, 1).transpose(0, 1, 3, 2), S4)
        Pd = self.grad_buffer("Pd", P.shape, qkv.dtype) if self.p > 0.0 else P
        causal_softmax(P, Pd, np.uint64(self.key), p, scale, qkv.dtype == np.float32)
        batched_gemm(Pd.reshape(B, NH, T, T), _heads(qkv, T, NH, 2), _heads(out, T, NH, None))
        return out

    def backward(self, dout):
        qkv, P, T, NH = self.qkv, self.P, self.T, self.NH
        B = qkv.shape[0] // T
        dqkv = self.grad_buffer("dqkv", qkv.shape, dout.dtype)
        p, scale = self._scalars(dout.dtype)
        dO = _heads(dout, T, NH, None)
        dS = self.grad_buffer("dS", P.shape, dout.dtype)
        dS4 = dS.reshape(B, NH, T, T)
        batched_gemm(dO, _heads(qkv, T, NH, 2).transpose(0, 1, 3, 2), dS4)  # d(dropout(P))
        Pd = self._dropped(P, dout.dtype).reshape(B, NH, T, T)
        batched_gemm(Pd.transpose(0, 1, 3, 2), dO, _heads(dqkv, T, NH, 2))  # dV
        causal_softmax_backward(dS, P, np.uint64(self.key), p, scale)
        batched_gemm(dS4, _heads(qkv, T, NH, 1), _heads(dqkv, T, NH, 0))  # dQ
        batched_gemm(dS4.transpose(0, 1, 3, 2), _heads(qkv, T, NH, 0), _heads(dqkv, T, NH, 1))  # dK
        return (dqkv,)
