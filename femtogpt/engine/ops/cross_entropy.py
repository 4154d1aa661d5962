"""Mean cross-entropy of logits (+ bias) against target ids, softmax and gradient fused.

loss = mean_r [logsumexp(z_r) - z_r[target_r]] with z = logits + bias. The max is subtracted before
exp (the reference does not, and overflows to inf above ~88). Forward keeps the softmax, backward
turns it into (softmax - onehot) * dloss / N in its own buffer. Targets < 0 are ignored (they count
neither in the sum nor in N), so a caller can pad.
"""
import numpy as np
from numba import prange

from femtogpt.engine.runtime import kernel

from femtogpt.engine.autograd import Function
from femtogpt.engine.ops.fastmath import exp_minus_max
from femtogpt.engine.ops.reduce import ROW_CHUNK, num_chunks, sum_partials


@kernel(fastmath={"reassoc"})
def _rows_forward(losses, probs, logits, bias, targets, r0, r1, fast):
    # rows r0..r1 of the forward; a plain helper so its scratch is private to the calling task
    V = logits.shape[1]
    bits = np.empty(V, np.int32)
    for r in range(r0, r1):
        row = probs[r]
        for v in range(V):
            row[v] = logits[r, v] + bias[v]
        m = exp_minus_max(row, V, bits, fast)
        s = 0.0
        for v in range(V):
            s += row[v]
        inv = row.dtype.type(1.0 / s) if fast else 1.0 / s
        for v in range(V):
            row[v] *= inv
        t = targets[r]
        losses[r] = np.log(s) + m - (logits[r, t] + bias[t]) if t >= 0 else 0.0


@kernel(parallel=True)
def cross_entropy_forward(losses, probs, logits, bias, targets, fast, chunk):
    # logits, probs: (N, V); bias: (V,); targets: (N,) ints; losses: (N,) float64 per-row loss
    # (0 where the target is ignored); fast: the float32 vectorised exp
    N = logits.shape[0]
    for k in prange((N + chunk - 1) // chunk):
        _rows_forward(losses, probs, logits, bias, targets, k * chunk, min(N, (k + 1) * chunk), fast)


@kernel(parallel=True)
def cross_entropy_backward(dlogits, dbias_part, probs, targets, scale, chunk):
    # dlogits = (probs - onehot) * scale for counted rows, 0 for ignored ones; dbias partials per chunk
    N, V = probs.shape
    for k in prange(dbias_part.shape[0]):
        for v in range(V):
            dbias_part[k, v] = 0.0
        for r in range(k * chunk, min(N, (k + 1) * chunk)):
            t = targets[r]
            for v in range(V):
                g = probs[r, v] * scale if t >= 0 else 0.0
                if v == t:
                    g -= scale
                dlogits[r, v] = g
                dbias_part[k, v] += g


class CrossEntropy(Function):
    """inputs: logits (N, V), bias (V,), targets (N,) ints; output: the mean loss, shape ().
    Per call: `denominator`, when given, replaces the count of these rows in the mean (a shard of a
    batch divides by the batch's count, so the shards' losses add up to the batch's)."""

    def forward(self, logits, bias, targets, denominator=None):
        N, V = logits.shape
        targets = targets.reshape(-1)
        if targets.size and targets.max() >= V:
            raise ValueError(f"target id out of range [0, {V})")
        self.probs = self.buffer("probs", (N, V), logits.dtype)
        losses = self.buffer("losses", (N,), np.float64)
        cross_entropy_forward(losses, self.probs, logits, bias, targets,
                              logits.dtype == np.float32, 16)
        self.targets = targets
        self.count = denominator or max(1, int((targets >= 0).sum()))
        self.losses = losses
        return np.array(losses.sum() / self.count, dtype=logits.dtype)

    def backward(self, dout):
        N, V = self.probs.shape
        dt = self.probs.dtype
        dlogits = self.grad_buffer("dlogits", (N, V), dt)
        part = self.grad_buffer("part", (num_chunks(N), V), dt)
        cross_entropy_backward(dlogits, part, self.probs, self.targets, float(dout) / self.count,
                               ROW_CHUNK)
        dbias = self.grad_target(1, "dbias", (V,), dt)
        sum_partials(dbias, part)
        return dlogits, dbias, None
