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
arrays are private to each task. Inner loops run over contiguous j or d so they vectorise; the
float32 path uses a vectorisable exp (ops/fastmath.py), float64 the exact one.
"""
import numpy as np
from numba import njit, prange

from femtogpt.autograd import Function
from femtogpt.ops.dropout import kept
from femtogpt.ops.fastmath import exp_shifted32


@njit(cache=True)
def _head_forward(out, P, qkv, bh, T, NH, hs, key, p, scale, fast):
    b, h = bh // NH, bh % NH
    C = NH * hs
    r0, qc, kc, vc = b * T, h * hs, C + h * hs, 2 * C + h * hs
    dt = qkv.dtype
    zero = scale - scale  # typed like the data
    kT = np.empty((hs, T), dt)  # keys transposed: the score loop runs over contiguous j
    v = np.empty((T, hs), dt)
    for j in range(T):
        for d in range(hs):
            kT[d, j] = qkv[r0 + j, kc + d]
            v[j, d] = qkv[r0 + j, vc + d]
    s = np.empty(T, dt)
    o = np.empty(hs, dt)
    bits = np.empty(T, np.int32)
    one = scale / scale
    keep = one / (one - p)
    for i in range(T):
        n = i + 1  # causal: keys 0..i
        for j in range(n):
            s[j] = zero
        for d in range(hs):
            qd = qkv[r0 + i, qc + d] * scale
            for j in range(n):
                s[j] += qd * kT[d, j]
        m = s[0]
        for j in range(1, n):
            m = max(m, s[j])
        if fast:
            exp_shifted32(s, n, m, bits)
        else:
            for j in range(n):
                s[j] = np.exp(s[j] - m)
        tot = zero
        for j in range(n):
            tot += s[j]
        inv = one / tot
        for d in range(hs):
            o[d] = zero
        for j in range(n):
            pj = s[j] * inv
            P[bh, i, j] = pj
            if p > zero:
                pj = pj * keep if kept(key, (bh * T + i) * T + j, p) else zero
            for d in range(hs):
                o[d] += pj * v[j, d]
        for d in range(hs):
            out[r0 + i, qc + d] = o[d]


@njit(cache=True)
def _head_backward(dqkv, dout, P, qkv, bh, T, NH, hs, key, p, scale):
    b, h = bh // NH, bh % NH
    C = NH * hs
    r0, qc, kc, vc = b * T, h * hs, C + h * hs, 2 * C + h * hs
    dt = qkv.dtype
    zero = scale - scale
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
    one = scale / scale
    keep = one / (one - p)
    for i in range(T):
        n = i + 1
        for d in range(hs):
            do[d] = dout[r0 + i, qc + d]
        for j in range(n):
            dp[j] = zero
        for d in range(hs):
            dd = do[d]
            for j in range(n):
                dp[j] += dd * vT[d, j]  # d(dropped P)[i, j] = dO_i . V_j
        dot = zero
        for j in range(n):
            pij = P[bh, i, j]
            ks = one
            if p > zero:
                ks = keep if kept(key, (bh * T + i) * T + j, p) else zero
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
def attention_forward(out, P, qkv, T, NH, key, p, scale, fast):
    # qkv: (B*T, 3C); out: (B*T, C); P: (B*NH, T, T), only j <= i is written; p, scale: qkv's dtype
    hs = out.shape[1] // NH
    for bh in prange(P.shape[0]):
        _head_forward(out, P, qkv, bh, T, NH, hs, key, p, scale, fast)


@njit(parallel=True, cache=True)
def attention_backward(dqkv, dout, P, qkv, T, NH, key, p, scale):
    # dqkv: (B*T, 3C) written whole; dout: (B*T, C)
    hs = dout.shape[1] // NH
    for bh in prange(P.shape[0]):
        _head_backward(dqkv, dout, P, qkv, bh, T, NH, hs, key, p, scale)


class CausalSelfAttention(Function):
    """inputs: qkv (B*T, 3C); output (B*T, C). T and NH fixed at construction."""

    def __init__(self, T, num_heads, p=0.0, key=0):
        self.T, self.NH, self.p, self.key = T, num_heads, float(p), int(key)

    def _scalars(self, dtype):
        hs = self.qkv.shape[1] // 3 // self.NH
        return dtype.type(self.p), dtype.type(1.0 / np.sqrt(hs))

    def forward(self, qkv):
        N, C3 = qkv.shape
        C, B = C3 // 3, N // self.T
        out = self.buffer("out", (N, C), qkv.dtype)
        self.P = self.buffer("P", (B * self.NH, self.T, self.T), qkv.dtype)
        self.qkv = qkv
        p, scale = self._scalars(qkv.dtype)
        attention_forward(out, self.P, qkv, self.T, self.NH, np.uint64(self.key), p, scale,
                          qkv.dtype == np.float32)
        return out

    def backward(self, dout):
        dqkv = self.buffer("dqkv", self.qkv.shape, dout.dtype)
        p, scale = self._scalars(dout.dtype)
        attention_backward(dqkv, dout, self.P, self.qkv, self.T, self.NH, np.uint64(self.key), p, scale)
        return (dqkv,)
