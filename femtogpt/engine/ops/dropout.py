"""Inverted dropout's random stream: the keep/drop decision and the keys of dropout sites.

The decision for element i of a dropout site is a hash of (key, i): no mask is stored, backward
recomputes it, any thread count gives the same mask, and a run is reproducible from its seed and step
alone (train/step.py derives the step's key from them, and the model each site's key from the
step's with `site_key`). There is no standalone dropout op: the fused kernels of attention
(engine/ops/attention.py) and residual+LayerNorm (engine/ops/layernorm.py) apply `kept`/`keep_scale`.
"""
import numpy as np
from femtogpt.engine.runtime import kernel

_MASK64 = (1 << 64) - 1


@kernel(inline="always")
def mix64(x):
    # splitmix64 finaliser: a bijective 64-bit mix with good avalanche
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@kernel(inline="always")
def kept(key, i, p):
    # does element i survive? u is uniform on [0, 1) with 24 bits, kept when u >= p
    h = mix64(np.uint64(key) + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15))
    return np.float64(h >> np.uint64(40)) * (1.0 / 16777216.0) >= p


@kernel(inline="always")
def keep_scale(key, i, p, scale):
    # 1/(1-p) if element i survives, else 0
    return scale if kept(key, i, p) else 0.0


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
