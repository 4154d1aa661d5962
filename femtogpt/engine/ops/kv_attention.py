"""Causal attention of a few new positions over a KV cache: the inference-only forward.

qkv: (n, 3C), the fused projection of the n new rows (queries in columns [0, C), head h at h*hs);
k, v: (T, C), the layer's cached keys and values, rows 0..p0+n-1 filled (the new rows included);
out: (n, C). New row i sits at window position p0 + i and attends to keys 0..p0+i:
    S = (q K^T) * hs^-0.5, P = softmax(S), O = P V.
It computes the same function as ops/attention.py (which runs whole [T, T] tiles through BLAS) up to
float32 rounding; tests/test_generate.py checks cached rows against full forwards. There is no
backward and no dropout: this is for generation only. Each (row, head) pair is one task writing its
own slice of out, so results do not depend on threads. For one new row the caller
runs it with numba.set_num_threads(1): NH tiny tasks are not worth a thread-pool round trip.
"""
import numpy as np
from numba import prange

from femtogpt.engine.runtime import kernel


@kernel()
def _row_head(out, qkv, k, v, i, h, p0, hs):
    qc = h * hs
    n = p0 + i + 1  # causal: keys 0..p0+i
    dt = qkv.dtype
    s = np.zeros(n, dt)
    o = np.zeros(hs, dt)
    for d in range(hs):
        qd = qkv[i, qc + d]
        for j in range(n):
            s[j] += qd * k[j, qc + d]
    scale = 1.0 / np.sqrt(hs)
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
    for j in range(n):
        pj = s[j] * inv
        for d in range(hs):
            o[d] += pj * v[j, qc + d]
    for d in range(hs):
        out[i, qc + d] = o[d]


@kernel(parallel=True)
def kv_attention_forward(out, qkv, k, v, p0, NH):
    # out: (n, C) written; qkv: (n, 3C); k, v: (T, C) with rows < p0 + n valid
    n, C = out.shape
    hs = C // NH
    for task in prange(n * NH):
        _row_head(out, qkv, k, v, task // NH, task % NH, p0, hs)

