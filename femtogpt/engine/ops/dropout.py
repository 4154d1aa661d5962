"""Inverted dropout with a counter-based random stream, and the standalone Dropout op.

The keep/drop decision for element i of a dropout site is a hash of (key, i): no mask is stored,
backward recomputes it, any thread count gives the same mask, and a run is reproducible from its
seed and step alone (the key is derived from them, see femtogpt.rng). The fused kernels of
attention and residual+LayerNorm call `keep_scale` the same way.
"""
import numpy as np
from numba import njit, prange

from femtogpt.engine.autograd import Function

_MASK64 = (1 << 64) - 1


@njit(inline="always", cache=True)
def mix64(x):
    # splitmix64 finaliser: a bijective 64-bit mix with good avalanche
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(inline="always", cache=True)
def kept(key, i, p):
    # does element i survive? u is uniform on [0, 1) with 24 bits, kept when u >= p
    h = mix64(np.uint64(key) + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15))
    return np.float64(h >> np.uint64(40)) * (1.0 / 16777216.0) >= p


@njit(inline="always", cache=True)
def keep_scale(key, i, p, scale):
    # 1/(1-p) if element i survives, else 0
    return scale if kept(key, i, p) else 0.0


@njit(parallel=True, cache=True)
def dropout_apply(out, x, key, p):
    # x, out: (N, C); out = x * mask / (1 - p). Forward applies it to the input, backward to dout:
    # the same mask both ways, since it is a function of (key, index)
    N, C = x.shape
    scale = 1.0 / (1.0 - p)
    for r in prange(N):
        for c in range(C):
            out[r, c] = x[r, c] * keep_scale(key, r * C + c, p, scale)


def site_key(*parts):
    """A 64-bit key for one dropout site from integers (seed, step, layer, site...)."""
    h = 0x243F6A8885A308D3
    for part in parts:
        h = (h ^ (int(part) & _MASK64)) * 0x100000001B3 & _MASK64
        h = _mix64_py(h)
    return h


def _mix64_py(x):
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class Dropout(Function):
    """Standalone inverted dropout on a (N, C) array; p = 0 is the identity."""

    def __init__(self, p=0.0, key=0):
        self.p, self.key = float(p), int(key)

    def _apply(self, name, x, buffer):
        out = buffer(name, x.shape, x.dtype)
        if self.p == 0.0:
            out[...] = x
        else:
            dropout_apply(out, x, np.uint64(self.key), self.p)
        return out

    def forward(self, x):
        return self._apply("out", x, self.buffer)

    def backward(self, dout):
        return (self._apply("dx", dout, self.grad_buffer),)
