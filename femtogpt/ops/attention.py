"""Causal multi-head self-attention, fused: scores, mask, softmax, dropout and P.V in one kernel.

Input qkv: (B*T, 3C), the rows of one batch element contiguous; columns [0, C) hold the queries,
[C, 2C) the keys and [2C, 3C) the values, head h at columns h*hs..(h+1)*hs of each block (the
reference's per-head tensors head_{l}_{h}_q/k/v side by side). Output: (B*T, C), head h's result at
columns h*hs..(h+1)*hs (the reference's concatenation order).
    S = (Q K^T) * hs^-0.5 (the fork's orientation), S[i, j] = -inf for j > i,
    P = softmax(S), O = dropout(P) V.
Forward keeps P (B*NH, T, T) for backward; the dropout mask is recomputed from its key. Each
(batch, head) pair is one task working on its own [T, T] tile, so no result depends on threads.
The per-head work lives in plain @njit helpers (not inlined into the prange body) so their scratch
arrays are private to each task.
"""
import numpy as np
from numba import njit, prange

from femtogpt.autograd import Function
from femtogpt.ops.dropout import keep_scale


@njit(cache=True)
def _head_forward(out, P, qkv, bh, T, NH, hs, key, p):
    b, h = bh // NH, bh % NH
    C = NH * hs
    r0, qc, kc, vc = b * T, h * hs, C + h * hs, 2 * C + h * hs
    dt = qkv.dtype
    kT = np.empty((hs, T), dt)  # keys transposed: the score loop runs over contiguous j
    v = np.empty((T, hs), dt)
    for j in range(T):
        for d in range(hs):
            kT[d, j] = qkv[r0 + j, kc + d]
            v[j, d] = qkv[r0 + j, vc + d]
    s = np.empty(T, dt)
    o = np.empty(hs, dt)
    scale = 1.0 / np.sqrt(hs)
    keep = 1.0 / (1.0 - p)
    for i in range(T):
        n = i + 1  # causal: keys 0..i
        for j in range(n):
            s[j] = 0.0
        for d in range(hs):
            qd = qkv[r0 + i, qc + d]
            for j in range(n):
                s[j] += qd * kT[d, j]
        m = -np.inf
        for j in range(n):
            s[j] *= scale
            if s[j] > m:
                m = s[j]
        tot = 0.0
        for j in range(n):
            e = np.exp(s[j] - m)
            s[j] = e
            tot += e
        inv = 1.0 / tot
        for d in range(hs):
            o[d] = 0.0
        for j in range(n):
            pj = s[j] * inv
            P[bh, i, j] = pj
            if p > 0.0:
                pj *= keep_scale(key, (bh * T + i) * T + j, p, keep)
            for d in range(hs):
                o[d] += pj * v[j, d]
        for d in range(hs):
            out[r0 + i, qc + d] = o[d]


@njit(cache=True)
def _head_backward(dqkv, dout, P, qkv, bh, T, NH, hs, key, p):
    b, h = bh // NH, bh % NH
    C = NH * hs
    r0, qc, kc, vc = b * T, h * hs, C + h * hs, 2 * C + h * hs
    dt = qkv.dtype
    q = np.empty((T, hs), dt)
    k = np.empty((T, hs), dt)
    vT = np.empty((hs, T), dt)
    for j in range(T):
        for d in range(hs):
            q[j, d] = qkv[r0 + j, qc + d]
            k[j, d] = qkv[r0 + j, kc + d]
            vT[d, j] = qkv[r0 + j, vc + d]
    dq = np.zeros((T, hs), dt)
    dk = np.zeros((T, hs), dt)
    dv = np.zeros((T, hs), dt)
    do = np.empty(hs, dt)
    dp = np.empty(T, dt)
    scale = 1.0 / np.sqrt(hs)
    keep = 1.0 / (1.0 - p)
    for i in range(T):
        n = i + 1
        for d in range(hs):
            do[d] = dout[r0 + i, qc + d]
        for j in range(n):
            dp[j] = 0.0
        for d in range(hs):
            dd = do[d]
            for j in range(n):
                dp[j] += dd * vT[d, j]  # d(dropped P)[i, j] = dO_i . V_j
        dot = 0.0
        for j in range(n):
            pij = P[bh, i, j]
            ks = keep_scale(key, (bh * T + i) * T + j, p, keep) if p > 0.0 else 1.0
            pd = pij * ks
            for d in range(hs):
                dv[j, d] += pd * do[d]
            dp[j] *= ks  # now dP[i, j], through the dropout mask
            dot += pij * dp[j]
        for j in range(n):
            ds = P[bh, i, j] * (dp[j] - dot) * scale  # softmax backward, then the score scale
            for d in range(hs):
                dq[i, d] += ds * k[j, d]
                dk[j, d] += ds * q[i, d]
    for j in range(T):
        for d in range(hs):
            dqkv[r0 + j, qc + d] = dq[j, d]
            dqkv[r0 + j, kc + d] = dk[j, d]
            dqkv[r0 + j, vc + d] = dv[j, d]


@njit(parallel=True, cache=True)
def attention_forward(out, P, qkv, T, NH, key, p):
    # qkv: (B*T, 3C); out: (B*T, C); P: (B*NH, T, T), only j <= i is written
    hs = out.shape[1] // NH
    for bh in prange(P.shape[0]):
        _head_forward(out, P, qkv, bh, T, NH, hs, key, p)


@njit(parallel=True, cache=True)
def attention_backward(dqkv, dout, P, qkv, T, NH, key, p):
    # dqkv: (B*T, 3C) written whole; dout: (B*T, C)
    hs = dout.shape[1] // NH
    for bh in prange(P.shape[0]):
        _head_backward(dqkv, dout, P, qkv, bh, T, NH, hs, key, p)


class CausalSelfAttention(Function):
    """inputs: qkv (B*T, 3C); output (B*T, C). T and NH fixed at construction."""

    def __init__(self, T, num_heads, p=0.0, key=0):
        self.T, self.NH, self.p, self.key = T, num_heads, float(p), int(key)

    def forward(self, qkv):
        N, C3 = qkv.shape
        C, B = C3 // 3, N // self.T
        out = self.buffer("out", (N, C), qkv.dtype)
        self.P = self.buffer("P", (B * self.NH, self.T, self.T), qkv.dtype)
        attention_forward(out, self.P, qkv, self.T, self.NH, np.uint64(self.key), self.p)
        self.qkv = qkv
        return out

    def backward(self, dout):
        dqkv = self.buffer("dqkv", self.qkv.shape, dout.dtype)
        attention_backward(dqkv, dout, self.P, self.qkv, self.T, self.NH, np.uint64(self.key),
                           self.p)
        return (dqkv,)
