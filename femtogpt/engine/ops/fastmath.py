"""Vectorisable float32 math for the kernels: LLVM cannot vectorise calls to libm's scalar exp
without SVML, and exp was about half of the attention forward and most of the cross-entropy.

Numba's on-disk cache does not notice edits to helpers imported from another file; femtogpt keeps
one cache directory per hash of the kernel sources (femtogpt/engine/runtime.py), so editing this file
starts a fresh cache. With $NUMBA_CACHE_DIR set by hand, clear it after editing.
"""
import numpy as np
from femtogpt.engine.runtime import kernel

_F = np.float32
_LOG2E, _LN2, _LOW = _F(1.4426950408889634), _F(0.6931471805599453), _F(-125.0)
_C2, _C3, _C4, _C5, _C6, _C7 = (_F(1 / 2), _F(1 / 6), _F(1 / 24), _F(1 / 120), _F(1 / 720), _F(1 / 5040))
_ONE, _HALF = _F(1.0), _F(0.5)


@kernel(inline="always")
def exp_shifted32(s, n, m, bits):
    """s[j] = exp(s[j] - m) for j < n where s[j] <= m (float32, relative error ~2e-7).

    2^k * e^(f ln2) with k an integer and |f| <= 1/2: a degree-7 polynomial for e^(f ln2), and 2^k
    built in the exponent bits of `bits` (an int32 scratch of length >= n, viewed as float32)."""
    scaled = bits.view(np.float32)
    for j in range(n):
        y = max((s[j] - m) * _LOG2E, _LOW)
        k = np.floor(y + _HALF)
        t = (y - k) * _LN2
        s[j] = _ONE + t * (_ONE + t * (_C2 + t * (_C3 + t * (_C4 + t * (_C5 + t * (_C6 + t * _C7))))))
        bits[j] = (np.int32(k) + np.int32(127)) << np.int32(23)
    for j in range(n):
        s[j] *= scaled[j]


@kernel(inline="always")
def _ordered(x):
    # int32 bits of a float32 -> an int32 with the same order as the floats (negatives flipped)
    return x ^ ((x >> np.int32(31)) & np.int32(0x7FFFFFFF))


@kernel(inline="always")
def exp_minus_max(s, n, bits, fast):
    """s[:n] = exp(s[:n] - max(s[:n])), the fast float32 exp when `fast`; returns the max.
    For float32 the max is taken over order-preserving integer keys of the bits: LLVM vectorises an
    integer max but not a float one (NaN rules), and this loop was a third of the softmax."""
    if fast:
        keys = s.view(np.int32)
        km = np.int32(-2147483648)
        for j in range(n):
            km = max(km, _ordered(keys[j]))
        bits[0] = _ordered(km)  # bits is scratch: borrow a slot to turn the key back into a float
        m = bits.view(s.dtype)[0]
        exp_shifted32(s, n, m, bits)
        return m
    m = s[0]
    for j in range(1, n):
        m = max(m, s[j])
    for j in range(n):
        s[j] = np.exp(s[j] - m)
    return m
