"""One training step on a batch, and the seeded batch sampler.

Everything random in a step comes from (seed, global step): the windows a step trains on and the
dropout masks. A run split across invocations therefore trains on exactly the same data as one long
run, whatever the thread count.
"""
import math

import numpy as np

from femtogpt.engine.ops.dropout import site_key
from femtogpt.engine.optim import NonFiniteUpdate
from femtogpt.model.gpt import DEFAULT_UNITS


def sample_batch(tokens, batch_size, T, seed, step):
    """(ids, targets), each (B, T): B windows of T+1 consecutive tokens at uniform random starts."""
    n = len(tokens)
    if n < T + 1:
        raise ValueError(f"the dataset has {n} tokens; a window needs num_tokens + 1 = {T + 1}")
    rng = np.random.default_rng([seed, step, 0x6261])
    starts = rng.integers(0, n - T, size=batch_size)
    windows = tokens[starts[:, None] + np.arange(T + 1)]
    return windows[:, :-1], windows[:, 1:]


class NonFiniteLoss(ArithmeticError):
    """The loss or the gradients are NaN/inf, or the update would make a weight or a moment so; raised
    before anything is changed, so the weights, the moments and the step stay those of the last good step."""


def _exact_norm(grad):
    """The L2 norm of a finite gradient whose float32 squared norm overflowed (in float64)."""
    return math.sqrt(float(np.dot(grad.astype(np.float64), grad.astype(np.float64))))


def train_step(model, optimizer, ids, targets, dropout=0.0, seed=0, units=DEFAULT_UNITS, group=None):
    """Forward, backward and one AdamW update; returns (loss, lr). The batch runs as `units` work
    units (model/gpt.py), shared out over the processes of `group` when one is given (they all
    end with the same gradient, so the same update); dropout masks are keyed by (seed, optimizer
    step) and the unit. A non-finite loss or gradient raises NonFiniteLoss before updating; so does
    an update that would leave a non-finite weight or moment (AdamW checks before it writes)."""
    params = model.params
    # writes every parameter's gradient (no zeroing needed)
    loss = model.loss_and_grad(ids, targets, dropout, site_key(seed, optimizer.step, 0x64726F70), units=units,
                               group=group)
    if not np.isfinite(loss):
        raise NonFiniteLoss(f"the loss became {loss} at step {optimizer.step + 1}")
    # one BLAS pass; its float32 sum can overflow for finite gradients, so only then look at each one
    with np.errstate(over="ignore"):
        squared_norm = np.dot(params.grad, params.grad)
    if not np.isfinite(squared_norm) and not np.isfinite(params.grad).all():
        raise NonFiniteLoss(f"the gradients became non-finite at step {optimizer.step + 1} (while the loss, "
                            f"{loss:.4f}, was still finite)")
    clip = optimizer.config.grad_clip
    if clip and not squared_norm <= clip * clip:  # an overflowed (inf) norm is above any clip
        norm = math.sqrt(squared_norm) if np.isfinite(squared_norm) else _exact_norm(params.grad)
        params.grad *= params.grad.dtype.type(clip / norm)
    try:
        lr = optimizer.update()
    except NonFiniteUpdate as exc:
        raise NonFiniteLoss(str(exc)) from None
    return loss, lr
