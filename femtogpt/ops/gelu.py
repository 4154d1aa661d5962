"""Bias add fused with the tanh-approximated GELU: out = gelu(h + bias).

gelu(u) = 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))), the reference's formula; its derivative is
analytic. Backward recomputes u = h + bias from the inputs instead of storing it.
"""
import numpy as np
from numba import njit, prange

from femtogpt.autograd import Function
from femtogpt.ops.reduce import ROW_CHUNK, num_chunks, sum_partials

SQRT_2_OVER_PI = 0.7978845608028654


@njit(parallel=True, cache=True)
def bias_gelu_forward(out, h, bias):
    # h, out: (N, C); bias: (C,)
    N, C = h.shape
    for r in prange(N):
        for c in range(C):
            u = h[r, c] + bias[c]
            out[r, c] = 0.5 * u * (1.0 + np.tanh(SQRT_2_OVER_PI * (u + 0.044715 * u * u * u)))


@njit(parallel=True, cache=True)
def bias_gelu_backward(dh, dbias_part, dout, h, bias, chunk):
    # dh: (N, C) written; dbias_part: (ceil(N / chunk), C) per-chunk partial sums of dh
    N, C = h.shape
    for k in prange(dbias_part.shape[0]):
        for c in range(C):
            dbias_part[k, c] = 0.0
        for r in range(k * chunk, min(N, (k + 1) * chunk)):
            for c in range(C):
                u = h[r, c] + bias[c]
                t = np.tanh(SQRT_2_OVER_PI * (u + 0.044715 * u * u * u))
                dt = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * u * u) * (1.0 - t * t)
                g = dout[r, c] * (0.5 * (1.0 + t) + 0.5 * u * dt)
                dh[r, c] = g
                dbias_part[k, c] += g


class BiasGelu(Function):
    def forward(self, h, bias):
        out = self.buffer("out", h.shape, h.dtype)
        bias_gelu_forward(out, h, bias)
        self.h, self.bias = h, bias
        return out

    def backward(self, dout):
        N, C = dout.shape
        dh = self.buffer("dh", (N, C), dout.dtype)
        part = self.buffer("part", (num_chunks(N), C), dout.dtype)
        bias_gelu_backward(dh, part, dout, self.h, self.bias, ROW_CHUNK)
        dbias = self.buffer("dbias", (C,), dout.dtype)
        sum_partials(dbias, part)
        return dh, dbias
