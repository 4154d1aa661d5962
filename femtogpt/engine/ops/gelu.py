"""Bias add fused with the tanh-approximated GELU: out = gelu(h + bias).

gelu(u) = 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))), the reference's formula; its derivative is
analytic. Backward recomputes u = h + bias from the inputs instead of storing it.
float32 uses a rational tanh (Eigen's, max error 3.4e-7, about 3 ulp) that the compiler vectorises;
libm's scalar tanh made this op the slowest of the step. float64 (gradchecks) uses the exact tanh.
"""
import numpy as np
from numba import prange

from femtogpt.engine.runtime import kernel

from femtogpt.engine.autograd import Function
from femtogpt.engine.ops.reduce import ROW_CHUNK, num_chunks, sum_partials

SQRT_2_OVER_PI = 0.7978845608028654
_F = np.float32
_CLAMP = _F(7.90531110763549805)
_A1, _A3, _A5, _A7 = _F(4.89352455891786e-03), _F(6.37261928875436e-04), _F(1.48572235717979e-05), _F(5.12229709037114e-08)
_A9, _A11, _A13 = _F(-8.60467152213735e-11), _F(2.00018790482477e-13), _F(-2.76076847742355e-16)
_B0, _B2, _B4, _B6 = _F(4.89352518554385e-03), _F(2.26843463243900e-03), _F(1.18534705686654e-04), _F(1.19825839466702e-06)
_K0, _K1, _HALF, _ONE, _THREE = _F(SQRT_2_OVER_PI), _F(0.044715), _F(0.5), _F(1.0), _F(3.0)


@kernel(inline="always")
def _tanh32(x):
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = x * (_A1 + x2 * (_A3 + x2 * (_A5 + x2 * (_A7 + x2 * (_A9 + x2 * (_A11 + x2 * _A13))))))
    q = _B0 + x2 * (_B2 + x2 * (_B4 + x2 * _B6))
    return p / q


@kernel(inline="always")
def _gelu_parts32(u):
    # (tanh term t, d/du of the tanh argument) in float32
    t = _tanh32(_K0 * (u + _K1 * u * u * u))
    return t, _K0 * (_ONE + _THREE * _K1 * u * u)


@kernel(inline="always")
def _gelu_parts64(u):
    t = np.tanh(SQRT_2_OVER_PI * (u + 0.044715 * u * u * u))
    return t, SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * u * u)


@kernel(parallel=True, fastmath={"contract"})
def bias_gelu_forward(out, h, bias, fast):
    # h, out: (N, C); bias: (C,); fast: float32 rational tanh
    N, C = h.shape
    for r in prange(N):
        if fast:
            for c in range(C):
                u = h[r, c] + bias[c]
                t, _ = _gelu_parts32(u)
                out[r, c] = _HALF * u * (_ONE + t)
        else:
            for c in range(C):
                u = h[r, c] + bias[c]
                t, _ = _gelu_parts64(u)
                out[r, c] = 0.5 * u * (1.0 + t)


@kernel(parallel=True)
def bias_gelu_backward(dh, dbias_part, dout, h, bias, fast, chunk):
    # dh: (N, C) written; dbias_part: (ceil(N / chunk), C) per-chunk partial sums of dh
    N, C = h.shape
    for k in prange(dbias_part.shape[0]):
        for c in range(C):
            dbias_part[k, c] = 0.0
        for r in range(k * chunk, min(N, (k + 1) * chunk)):
            if fast:
                for c in range(C):
                    u = h[r, c] + bias[c]
                    t, da = _gelu_parts32(u)
                    g = dout[r, c] * (_HALF * (_ONE + t) + _HALF * u * da * (_ONE - t * t))
                    dh[r, c] = g
                    dbias_part[k, c] += g
            else:
                for c in range(C):
                    u = h[r, c] + bias[c]
                    t, da = _gelu_parts64(u)
                    g = dout[r, c] * (0.5 * (1.0 + t) + 0.5 * u * da * (1.0 - t * t))
                    dh[r, c] = g
                    dbias_part[k, c] += g


class BiasGelu(Function):
    def forward(self, h, bias):
        out = self.buffer("out", h.shape, h.dtype)
        bias_gelu_forward(out, h, bias, h.dtype == np.float32)
        self.h, self.bias = h, bias
        return out

    def backward(self, dout):
        N, C = dout.shape
        dh = self.grad_buffer("dh", (N, C), dout.dtype)
        part = self.grad_buffer("part", (num_chunks(N), C), dout.dtype)
        bias_gelu_backward(dh, part, dout, self.h, self.bias, dout.dtype == np.float32, ROW_CHUNK)
        dbias = self.grad_target(1, "dbias", (C,), dout.dtype)
        sum_partials(dbias, part)
        return dh, dbias
