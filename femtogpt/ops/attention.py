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
from femtogpt.ops.fastmath import exp_minus_max


@njit(inline="always", cache=True, fastmath={"contract"})
def _softmax_row(P, pd, s, n, bh, i, T, key, p, keep, zero, bits, fast):
    # P[bh, i, :n] = softmax(s[:n]); pd[:n] = dropout(P[bh, i, :n]); s is overwritten
    exp_minus_max(s, n, bits, fast)
    tot = zero
    for j in range(n):
        tot += s[j]
    inv = (keep / keep) / tot
    for j in range(n):
        pj = s[j] * inv
        P[bh, i, j] = pj
        if p > zero:
            pj = pj * keep if kept(key, (bh * T + i) * T + j, p) else zero
        pd[j] = pj


@njit(cache=True, fastmath={"contract"})
def _head_forward(out, P, qkv, bh, T, NH, hs, key, p, scale, fast):
    # rows are done four at a time: each key and value loaded once serves four queries
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
    # separate allocations, so the compiler knows the four rows never alias
    s0, s1, s2, s3 = np.empty(T, dt), np.empty(T, dt), np.empty(T, dt), np.empty(T, dt)
    p0, p1, p2, p3 = np.zeros(T, dt), np.zeros(T, dt), np.zeros(T, dt), np.zeros(T, dt)
    o0, o1, o2, o3 = np.empty(hs, dt), np.empty(hs, dt), np.empty(hs, dt), np.empty(hs, dt)
    bits = np.empty(T, np.int32)
    keep = (scale / scale) / ((scale / scale) - p)
    for i0 in range(0, T, 4):
        nb = min(4, T - i0)
        n = i0 + nb  # keys 0..n-1 cover every row of the block
        for j in range(n):
            s0[j] = zero
            s1[j] = zero
            s2[j] = zero
            s3[j] = zero
        for d in range(hs):
            q0 = qkv[r0 + i0, qc + d] * scale
            q1 = qkv[r0 + i0 + 1, qc + d] * scale if nb > 1 else zero
            q2 = qkv[r0 + i0 + 2, qc + d] * scale if nb > 2 else zero
            q3 = qkv[r0 + i0 + 3, qc + d] * scale if nb > 3 else zero
            for j in range(n):
                kv = kT[d, j]
                s0[j] += q0 * kv
                s1[j] += q1 * kv
                s2[j] += q2 * kv
                s3[j] += q3 * kv
        # causal: row i0 + r sees keys 0..i0 + r; p_r stays 0 beyond (zeros from the start)
        _softmax_row(P, p0, s0, i0 + 1, bh, i0, T, key, p, keep, zero, bits, fast)
        if nb > 1:
            _softmax_row(P, p1, s1, i0 + 2, bh, i0 + 1, T, key, p, keep, zero, bits, fast)
        if nb > 2:
            _softmax_row(P, p2, s2, i0 + 3, bh, i0 + 2, T, key, p, keep, zero, bits, fast)
        if nb > 3:
            _softmax_row(P, p3, s3, i0 + 4, bh, i0 + 3, T, key, p, keep, zero, bits, fast)
        for d in range(hs):
            o0[d] = zero
            o1[d] = zero
            o2[d] = zero
            o3[d] = zero
        for j in range(n):
            w0, w1, w2, w3 = p0[j], p1[j], p2[j], p3[j]
            for d in range(hs):
                vj = v[j, d]
                o0[d] += w0 * vj
                o1[d] += w1 * vj
                o2[d] += w2 * vj
                o3[d] += w3 * vj
        for d in range(hs):
            out[r0 + i0, qc + d] = o0[d]
        if nb > 1:
            for d in range(hs):
                out[r0 + i0 + 1, qc + d] = o1[d]
        if nb > 2:
            for d in range(hs):
                out[r0 + i0 + 2, qc + d] = o2[d]
        if nb > 3:
            for d in range(hs):
                out[r0 + i0 + 3, qc + d] = o3[d]


@njit(cache=True, fastmath={"contract"})
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
        dqkv = self.grad_buffer("dqkv", self.qkv.shape, dout.dtype)
        p, scale = self._scalars(dout.dtype)
        attention_backward(dqkv, dout, self.P, self.qkv, self.T, self.NH, np.uint64(self.key), p, scale)
        return (dqkv,)
