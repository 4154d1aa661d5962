"""LayerNorm over the last axis, plain and fused with a residual add (+ bias, + dropout).

LayerNorm: (x - mean) / sqrt(var + eps) * gamma + beta, biased variance, eps inside the sqrt.
ResidualLayerNorm: r = a + dropout(b + bias); out = LayerNorm(r). The model uses it twice per layer:
after attention (a = normed input, b = heads @ proj_w, bias = proj_b, dropout on) and after the FFN
(a = M, b = gelu(...) @ ff2_w, bias = ff2_b), where its LayerNorm is the next layer's input norm or
the head norm. Row statistics are accumulated in float64.
"""
import numpy as np
from numba import prange

from femtogpt.engine.runtime import kernel

from femtogpt.engine.autograd import Function
from femtogpt.engine.ops.dropout import keep_scale
from femtogpt.engine.ops.reduce import ROW_CHUNK, num_chunks, sum_partials

EPS = 1e-5


@kernel(inline="always")
def _normalize_row(out, x, mean, rstd, gamma, beta, r, eps):
    C = x.shape[1]
    m = 0.0
    for c in range(C):
        m += x[r, c]
    m /= C
    var = 0.0
    for c in range(C):
        d = x[r, c] - m
        var += d * d
    var /= C
    mean[r] = m
    rstd[r] = 1.0 / np.sqrt(var + eps)
    m, s = mean[r], rstd[r]  # statistics in float64, the elementwise pass in the data's precision
    for c in range(C):
        out[r, c] = (x[r, c] - m) * s * gamma[c] + beta[c]


@kernel(inline="always")
def _row_backward(dx, dgamma_part, dbeta_part, dout, x, mean, rstd, gamma, r, k):
    # writes dx[r]; adds row r's share of dgamma/dbeta into the chunk partials [k]
    C = x.shape[1]
    m = mean[r]
    s = rstd[r]
    g_sum = 0.0  # row sums in float64; the elementwise work in the data's precision
    gx_sum = 0.0
    for c in range(C):
        xhat = (x[r, c] - m) * s
        g = dout[r, c] * gamma[c]
        g_sum += g
        gx_sum += g * xhat
        dgamma_part[k, c] += dout[r, c] * xhat
        dbeta_part[k, c] += dout[r, c]
    g_mean = dx.dtype.type(g_sum / C)
    gx_mean = dx.dtype.type(gx_sum / C)
    for c in range(C):
        xhat = (x[r, c] - m) * s
        dx[r, c] = s * (dout[r, c] * gamma[c] - g_mean - xhat * gx_mean)


@kernel(parallel=True, fastmath={"reassoc"})
def layernorm_forward(out, mean, rstd, x, gamma, beta, eps):
    # x, out: (N, C); gamma, beta: (C,); mean, rstd: (N,) saved for backward
    for r in prange(x.shape[0]):
        _normalize_row(out, x, mean, rstd, gamma, beta, r, eps)


@kernel(parallel=True, fastmath={"reassoc"})
def layernorm_backward(dx, dgamma_part, dbeta_part, dout, x, mean, rstd, gamma, chunk):
    # dx: (N, C) written; d*_part: (ceil(N / chunk), C) per-chunk partial sums
    N, C = x.shape
    for k in prange(dgamma_part.shape[0]):
        for c in range(C):
            dgamma_part[k, c] = 0.0
            dbeta_part[k, c] = 0.0
        for r in range(k * chunk, min(N, (k + 1) * chunk)):
            _row_backward(dx, dgamma_part, dbeta_part, dout, x, mean, rstd, gamma, r, k)


@kernel(parallel=True, fastmath={"reassoc"})
def residual_layernorm_forward(out, resid, mean, rstd, a, b, bias, gamma, beta, eps, key, p):
    # resid = a + dropout(b + bias) is kept for backward; out = LayerNorm(resid); all (N, C)
    N, C = a.shape
    scale = 1.0 / (1.0 - p)
    for r in prange(N):
        for c in range(C):
            v = b[r, c] + bias[c]
            if p > 0.0:
                v = v * keep_scale(key, r * C + c, p, scale)
            resid[r, c] = a[r, c] + v
        _normalize_row(out, resid, mean, rstd, gamma, beta, r, eps)


@kernel(parallel=True, fastmath={"reassoc"})
def residual_layernorm_backward(da, db, dgamma_part, dbeta_part, dbias_part, dout, resid, mean,
                                rstd, gamma, key, p, chunk):
    # da = dresid, db = dresid * mask / (1 - p); dbias sums db; all partials per row chunk
    N, C = resid.shape
    scale = 1.0 / (1.0 - p)
    for k in prange(dgamma_part.shape[0]):
        for c in range(C):
            dgamma_part[k, c] = 0.0
            dbeta_part[k, c] = 0.0
            dbias_part[k, c] = 0.0
        for r in range(k * chunk, min(N, (k + 1) * chunk)):
            _row_backward(da, dgamma_part, dbeta_part, dout, resid, mean, rstd, gamma, r, k)
            for c in range(C):
                g = da[r, c]
                if p > 0.0:
                    g = g * keep_scale(key, r * C + c, p, scale)
                db[r, c] = g
                dbias_part[k, c] += g


class LayerNorm(Function):
    def __init__(self, eps=EPS):
        self.eps = eps

    def forward(self, x, gamma, beta):
        N, C = x.shape
        out = self.buffer("out", (N, C), x.dtype)
        self.mean = self.buffer("mean", (N,), x.dtype)
        self.rstd = self.buffer("rstd", (N,), x.dtype)
        layernorm_forward(out, self.mean, self.rstd, x, gamma, beta, self.eps)
        self.x, self.gamma = x, gamma
        return out

    def backward(self, dout):
        N, C = dout.shape
        dt = dout.dtype
        dx = self.grad_buffer("dx", (N, C), dt)
        pg = self.grad_buffer("pg", (num_chunks(N), C), dt)
        pb = self.grad_buffer("pb", (num_chunks(N), C), dt)
        layernorm_backward(dx, pg, pb, dout, self.x, self.mean, self.rstd, self.gamma, ROW_CHUNK)
        dgamma, dbeta = self.grad_target(1, "dgamma", (C,), dt), self.grad_target(2, "dbeta", (C,), dt)
        sum_partials(dgamma, pg)
        sum_partials(dbeta, pb)
        return dx, dgamma, dbeta


class ResidualLayerNorm(Function):
    """out = LayerNorm(a + dropout(b + bias)); inputs (a, b, bias, gamma, beta); per call: dropout p,
    its mask keyed by `key`."""

    def __init__(self, eps=EPS):
        self.eps = eps

    def forward(self, a, b, bias, gamma, beta, p=0.0, key=0):
        self.p, self.key = float(p), int(key)
        N, C = a.shape
        out = self.buffer("out", (N, C), a.dtype)
        self.resid = self.buffer("resid", (N, C), a.dtype)
        self.mean = self.buffer("mean", (N,), a.dtype)
        self.rstd = self.buffer("rstd", (N,), a.dtype)
        residual_layernorm_forward(out, self.resid, self.mean, self.rstd, a, b, bias, gamma, beta,
                                   self.eps, np.uint64(self.key), self.p)
        self.gamma = gamma
        return out

    def backward(self, dout):
        N, C = dout.shape
        dt = dout.dtype
        da, db = self.grad_buffer("da", (N, C), dt), self.grad_buffer("db", (N, C), dt)
        parts = [self.grad_buffer(k, (num_chunks(N), C), dt) for k in ("pg", "pb", "pbias")]
        residual_layernorm_backward(da, db, *parts, dout, self.resid, self.mean, self.rstd,
                                    self.gamma, np.uint64(self.key), self.p, ROW_CHUNK)
        grads = [self.grad_target(i, k, (C,), dt) for i, k in ((3, "dgamma"), (4, "dbeta"), (2, "dbias"))]
        for g, part in zip(grads, parts):
            sum_partials(g, part)
        dgamma, dbeta, dbias = grads
        return da, db, dbias, dgamma, dbeta
