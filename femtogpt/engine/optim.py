"""AdamW over the flat parameter buffer, exactly as the reference (§3.1), in one Numba kernel.

Per element: p -= lr*wd*p (decoupled decay on every parameter), m = b1 m + (1-b1) g,
v = b2 v + (1-b2) g^2, p -= (m / (1-b1^t)) * lr / (sqrt(v / (1-b2^t)) + eps) with t = step + 1.
The update is elementwise, so any thread count gives the same bits.
"""
import numpy as np
from numba import prange

from femtogpt.engine.runtime import kernel

from femtogpt.engine.threads import serial_if_small

_CHUNK = 1 << 14


@kernel(parallel=True)
def adamw_update(p, g, m, v, lr, beta1, beta2, eps, wd, bc1, bc2, chunk):
    # p, g, m, v: (P,) flat; bc1, bc2: bias corrections 1 - beta^t
    n = p.size
    one = beta1 / beta1  # 1 in the parameters' precision
    for k in prange((n + chunk - 1) // chunk):
        for i in range(k * chunk, min(n, (k + 1) * chunk)):
            gi = g[i]
            pi = p[i] - lr * wd * p[i]
            mi = beta1 * m[i] + (one - beta1) * gi
            vi = beta2 * v[i] + (one - beta2) * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = pi - (mi / bc1) * lr / (np.sqrt(vi / bc2) + eps)


class AdamW:
    """Moments m, v shaped like the flat buffer; `step` counts updates done (the reference's step)."""

    def __init__(self, params, config, step=0):
        self.params, self.config, self.step = params, config, int(step)
        self.m = np.zeros_like(params.data)
        self.v = np.zeros_like(params.data)

    def update(self, lr=None):
        """One update with the gradients in params.grad; lr defaults to the schedule at `step`."""
        c = self.config
        lr = c.learning_rate(self.step) if lr is None else lr
        t = self.step + 1
        f = self.params.data.dtype.type  # scalars in the parameters' precision, as the reference (f32)
        with serial_if_small(self.params.size):
            adamw_update(self.params.data, self.params.grad, self.m, self.v, f(lr), f(c.beta1),
                         f(c.beta2), f(c.eps), f(c.weight_decay), f(1.0 - c.beta1 ** t),
                         f(1.0 - c.beta2 ** t), _CHUNK)
        self.step += 1
        return lr
