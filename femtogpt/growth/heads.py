"""insert-head: one more attention head in every layer of a trained model, its function unchanged.

Every layer keeps its H heads bitwise and gains head H, of the same head size hs. The residual width
E stays; the attention width D = H*hs grows to (H+1)*hs (config.Hyperparameters.head_size is kept,
so after the first insertion D != E): qkv_{l} goes from (E, 3D) to (E, 3(D+hs)), the attention
output from (rows, D) to (rows, D+hs) and proj_{l}_weights from (D, E) to (D+hs, E).

Why the output is unchanged: the attention half adds O @ proj_w with O = [O_0 | ... | O_H] (the
heads side by side), so O @ proj_w = sum over heads h of O_h @ proj_w[h*hs:(h+1)*hs]. The new head's
rows of proj_w are zero, so its term is exactly zero whatever its q, k, v, and every other term is
the old one. (In floating point the GEMM sums the same nonzero products, plus zeros; tests hold the
logits to float32 rounding, and to float64 rounding for a float64 model.)

Why its q, k, v are drawn (the reference init, N(0, 0.02), from the stream of (seed, name) as
Parameters.init_reference draws every tensor) and not zero: the new proj rows get the gradient
O_H^T dA, which is zero if O_H is, and O_H = softmax(Q K^T / sqrt(hs)) V is zero when V is; the
head's q/k/v get their gradient through those rows (zero until the rows move). With V drawn, the
rows move on the first step and then q, k, v learn; with V = 0 nothing would ever move (weight decay
keeps zero at zero). Q and K drawn too, so the new head does not start as a uniform average of V,
the same for every query (and to break the symmetry when more than one head is inserted).

Only the same number of heads in every layer: Hyperparameters holds one num_heads for all layers, so
a head goes into every layer at once (per-layer head counts would be a new field in every file,
every layout and every runner, for a choice the fork's experiments do not need).

The optimizer: the moments of every old tensor, and of the old rows of proj_{l}_weights, are kept
bitwise; the new slices start at zero; the step is kept (as insert-layer does: no warm-up restart).
AdamW's bias correction divides by 1 - beta^step, close to 1 at a late step, so the new slices' first
updates are about (1 - beta1) / sqrt(1 - beta2), ~3x lr, rather than Adam's usual lr on a first step.
reset_optimizer drops every moment instead (warm-up restarts from lr 0).
"""
import secrets
from dataclasses import dataclass, replace

import numpy as np

from femtogpt.engine.params import Parameters, reference_names
from femtogpt.growth.surgery import grown_checkpoint
from femtogpt.io.logs import INSERT_HEAD, new_log


def head_names(hp, h):
    """The reference names of head h's tensors in every layer, in file order."""
    return [f"head_{l}_{h}_{part}" for l in range(hp.num_layers) for part in "kqv"]


@dataclass
class InsertHeadReport:
    head: int               # the new head's index in every layer (the old num_heads)
    head_size: int
    seed: int
    new: list               # names of the new heads' tensors (head_{l}_{head}_{k,q,v})
    optimizer: str          # "kept" (moments kept, new slices zero, step kept), "reset", or "none"
    step: int               # the optimizer step after the insertion


def _grow_proj(hp, arrays, old_D):
    """{name: array} with each proj_{l}_weights (old_D, E) padded with zero rows to (D, E)."""
    out = dict(arrays)
    for l in range(hp.num_layers):
        name = f"proj_{l}_weights"
        old = arrays[name]
        out[name] = np.concatenate([old, np.zeros((hp.attention_width - old_D, old.shape[1]), old.dtype)])
    return out


def insert_head(checkpoint, seed=None, reset_optimizer=False):
    """(new Checkpoint, InsertHeadReport): `checkpoint`'s model with head H (H = num_heads) added to
    every layer, of the same head size: its q, k, v drawn N(0, 0.02) (keyed by `seed`; None: a fresh
    one) and its rows of proj_{l}_weights zero, so the model computes the same function (see the module
    docstring). Every other value is copied bitwise; the input is not touched."""
    old_hp = checkpoint.hp
    H, hs, old_D = old_hp.num_heads, old_hp.head_size, old_hp.attention_width
    hp = replace(old_hp, num_heads=H + 1, head_size=hs).validate()
    seed = secrets.randbits(32) if seed is None else int(seed)
    new = head_names(hp, H)
    params = Parameters(hp, checkpoint.model.dtype).init_reference(seed, names=set(new))  # all else zero
    dst = params.named()
    src = _grow_proj(hp, checkpoint.model.params.named(), old_D)  # the new head's proj rows: zero
    for name in reference_names(old_hp):
        dst[name][...] = src[name]

    grown, how = grown_checkpoint(  # old moments kept, the new slices (head H's q/k/v, its proj rows) zero
        checkpoint, hp, params, lambda moments: _grow_proj(hp, moments, old_D),
        lambda how: new_log(INSERT_HEAD, head=H, head_size=hs, seed=seed, optimizer=how), reset_optimizer)
    return grown, InsertHeadReport(head=H, head_size=hs, seed=seed, new=new, optimizer=how, step=grown.step)
