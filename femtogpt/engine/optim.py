"""AdamW over the flat parameter buffer, exactly as the reference (§3.1), in one guarded Numba kernel.

Per element: p -= lr*wd*p (decoupled decay on every parameter), m = b1 m + (1-b1) g,
v = b2 v + (1-b2) g^2, p -= (m / (1-b1^t)) * lr / (sqrt(v / (1-b2^t)) + eps) with t = step + 1.
Every scalar is in the parameters' precision, and the bias corrections 1 - b^t use the very b the
moments use (in float32, b rounded to float32; 1 - b^t is computed in float64 from it and rounded once).

The guard: the kernel first computes every new value without storing any (the check pass) and stores
them (the write pass) only if all are finite; otherwise nothing has changed and `update` raises
NonFiniteUpdate. Both passes compute the same expressions from the same inputs, so the check sees the
very values the write pass stores. Each pass runs chunk by chunk on contiguous slices, which the
compiler vectorises (numpy's error model: no Python ZeroDivisionError branch in the loop), so the
guarded update is faster than the unguarded one it replaced. The update is elementwise, so any thread
count gives the same bits.
"""
import numpy as np
from numba import prange

from femtogpt.engine.runtime import kernel
from femtogpt.engine.threads import serial_if_small

_CHUNK = 1 << 14


class NonFiniteUpdate(ArithmeticError):
    """The update would make a weight or a moment NaN or infinite; nothing was changed."""


@kernel(error_model="numpy")
def adamw_element(p, g, m, v, lr, beta1, beta2, eps, wd, bc1, bc2):
    # one element's new (p, m, v); the one expression both passes use
    one = beta1 / beta1  # 1 in the parameters' precision
    pi = p - lr * wd * p
    mi = beta1 * m + (one - beta1) * g
    vi = beta2 * v + (one - beta2) * g * g
    return pi - (mi / bc1) * lr / (np.sqrt(vi / bc2) + eps), mi, vi


@kernel(error_model="numpy")
def adamw_chunk_finite(p, g, m, v, lr, beta1, beta2, eps, wd, bc1, bc2):
    # the check pass over one chunk: are all the new values finite? (x - x is 0 for finite x, else NaN)
    bad = False
    for i in range(p.size):
        pn, mn, vn = adamw_element(p[i], g[i], m[i], v[i], lr, beta1, beta2, eps, wd, bc1, bc2)
        bad |= not ((pn - pn) + (mn - mn) + (vn - vn) == 0)
    return not bad


@kernel(error_model="numpy")
def adamw_chunk_write(p, g, m, v, lr, beta1, beta2, eps, wd, bc1, bc2):
    for i in range(p.size):
        p[i], m[i], v[i] = adamw_element(p[i], g[i], m[i], v[i], lr, beta1, beta2, eps, wd, bc1, bc2)


@kernel(parallel=True, error_model="numpy")
def adamw_update(p, g, m, v, lr, beta1, beta2, eps, wd, bc1, bc2, chunk):
    # p, g, m, v: (P,) flat; bc1, bc2: bias corrections 1 - beta^t. Returns False, having written
    # nothing, when some new value would not be finite; else updates p, m, v in place and returns True
    n = p.size
    chunks = (n + chunk - 1) // chunk
    finite = np.empty(chunks, np.bool_)
    for k in prange(chunks):  # check pass: reads only
        lo, hi = k * chunk, min(n, (k + 1) * chunk)
        finite[k] = adamw_chunk_finite(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], lr, beta1, beta2, eps, wd,
                                       bc1, bc2)
    if not finite.all():
        return False
    for k in prange(chunks):  # write pass
        lo, hi = k * chunk, min(n, (k + 1) * chunk)
        adamw_chunk_write(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], lr, beta1, beta2, eps, wd, bc1, bc2)
    return True


def bias_corrections(config, t, dtype):
    """(1 - b1^t, 1 - b2^t) in `dtype`, from the betas rounded to `dtype`: the betas the moments use."""
    f = np.dtype(dtype).type
    b1, b2 = float(f(config.beta1)), float(f(config.beta2))
    return f(1.0 - b1 ** t), f(1.0 - b2 ** t)


class AdamW:
    """Moments m, v shaped like the flat buffer; `step` counts updates done (the reference's step)."""

    def __init__(self, params, config, step=0):
        self.params, self.config, self.step = params, config, int(step)
        self.m = np.zeros_like(params.data)
        self.v = np.zeros_like(params.data)

    def update(self, lr=None):
        """One update with the gradients in params.grad; lr defaults to the schedule at `step`.
        Raises NonFiniteUpdate, leaving weights, moments and step as they were, when the update would
        make any of them NaN or infinite (e.g. an lr so large that it overflows)."""
        c = self.config
        lr = c.learning_rate(self.step) if lr is None else lr
        t = self.step + 1
        f = self.params.data.dtype.type  # scalars in the parameters' precision, as the reference (f32)
        with np.errstate(over="ignore"):  # an lr past float32's range becomes inf: the guard reports it
            scalars = (f(lr), f(c.beta1), f(c.beta2), f(c.eps), f(c.weight_decay),
                       *bias_corrections(c, t, self.params.data.dtype))
        with serial_if_small(self.params.size):
            ok = adamw_update(self.params.data, self.params.grad, self.m, self.v, *scalars, _CHUNK)
        if not ok:
            raise NonFiniteUpdate(f"the update at step {t} (lr {lr:g}) would make a weight or an optimizer "
                                  f"moment non-finite")
        self.step += 1
        return lr
