"""Model surgery: `init_with` (a trained body on a new vocabulary) and `insert_layer` (grow a model).

Both take a Checkpoint and return a new one; neither touches its input or any file. Where we differ from
the reference (§1.2, §5): init-with keeps the parent's history in the child's logs (so `compare` can
see the lineage), takes any tokenizer kind, and can carry over the rows of tokens both vocabularies
share; insert-layer offers a near-identity init for the new layer and keeps the optimizer moments of
every moved tensor (the reference draws the new layer at random and throws the whole optimizer away).

Why near-identity is exact here (the reference says exact identity is impossible; it is, for the
model's *function*). A layer maps X to X' = M + F with N = LN_a(X) and M = LN_b(N + A). X' is never
used directly: the only reader of a layer's output is the next LayerNorm (the next layer's LN_a, or
the head norm), and LayerNorm forgets any per-row affine change, LN(s*x + t*1) = LN(x) for s > 0.
With proj_w = proj_b = 0 (A = 0) and ff2_w = ff2_b = 0 (F = 0), X' = LN_b(LN_a(X)). With gains that
are the SAME constant in every channel and biases that are constant too, each LN is itself a per-row
affine map of its input, so X' = s*X + t*1 per row and the next LayerNorm sees exactly what it saw
before the insertion, up to LayerNorm's epsilon (1e-5 inside the sqrt; a relative change of about
1e-5 / var(X) in each row's scale). Copying a neighbour's learned LN gains instead (a natural
guess) breaks this, because per-channel gains are not a per-row affine map: experiments/growth
measures that variant too. So the near-identity layer is: both LN gains 1, all biases 0, proj_w and
ff2_w zero, and q/k/v and ff1 small random N(0, 0.02) so that gradients reach them once proj_w and
ff2_w move (proj_w and ff2_w get gradients at once: their inputs are nonzero).
"""
import re
import secrets
from dataclasses import dataclass, replace

import numpy as np

from femtogpt.engine.params import Parameters, named_views, reference_names
from femtogpt.io.checkpoint import assemble, create
from femtogpt.io.logs import INIT_WITH, INSERT_LAYER, RESET_OPTIMIZER, last_log_id, new_log

VOCAB_TENSORS = ("token_embedding", "head_map_weights", "head_map_bias")  # depend on V: fresh in init-with
INITS = ("random", "near-identity")
_LAYER_NAME = re.compile(r"(norm|atten_norm|proj|feedforward1|feedforward2)_(\d+)_(coeff|bias|weights)\Z"
                         r"|head_(\d+)_(\d+)_([kqv])\Z")


def layer_of(name):
    """The layer index of a per-layer tensor name, or None for a global tensor."""
    m = _LAYER_NAME.match(name)
    if m is None:
        return None
    return int(m.group(2) if m.group(2) is not None else m.group(4))


def rename_layer(name, new_index):
    """`name` (a per-layer tensor) moved to layer `new_index`."""
    m = _LAYER_NAME.match(name)
    if m.group(1) is not None:
        return f"{m.group(1)}_{new_index}_{m.group(3)}"
    return f"head_{new_index}_{m.group(5)}_{m.group(6)}"


def layer_names(hp, l):
    """The reference names of layer l's tensors, in file order."""
    return [n for n in reference_names(hp) if layer_of(n) == l]


# ------------------------------------------------------------------------------------ init-with

@dataclass
class InitWithReport:
    copied: list            # tensor names copied from the parent (bitwise); a learned pos_embedding
    #                         whose T changed appears as "pos_embedding rows 0..k-1 (...)"
    fresh: list             # tensor names with a fresh init (the vocabulary-dependent ones; and
    #                         "pos_embedding rows k..T-1 (...)" when the child's T is longer)
    copied_params: int
    fresh_params: int
    shared_tokens: int | None = None   # tokens whose rows were carried over (None: not asked)


def shared_token_pairs(parent_tok, child_tok):
    """[(child_id, parent_id)] of tokens that stand for the same bytes in both vocabularies (the
    first parent id wins if a vocabulary spells one string twice). Empty tokens never match."""
    parent_ids = {}
    for i in range(parent_tok.vocab_size):
        parent_ids.setdefault(parent_tok.token_bytes(i), i)
    parent_ids.pop(b"", None)
    pairs = []
    for i in range(child_tok.vocab_size):
        j = parent_ids.get(child_tok.token_bytes(i))
        if j is not None:
            pairs.append((i, j))
    return pairs


def init_with(parent, tokenizer, num_tokens=None, seed=None, keep_shared_tokens=False, parent_path=None):
    """(child Checkpoint, InitWithReport): a fresh model for `tokenizer` whose body (every tensor but
    token_embedding and head_map_*) is the parent's, bitwise. E, L, H and the positional encoding are
    the parent's; T is `num_tokens` or the parent's (only a learned pos_embedding depends on T: its
    first min(T_parent, T) rows are the parent's, any further rows the child's own fresh N(0, 0.02)
    draw). The child's logs are the parent's followed by one InitWith entry, so the lineage survives;
    its optimizer is fresh.
    keep_shared_tokens: tokens both vocabularies share also get the parent's token_embedding row,
    head_map_weights column and head_map_bias entry."""
    hp = replace(parent.hp, vocab_size=tokenizer.vocab_size,
                 num_tokens=parent.hp.num_tokens if num_tokens is None else int(num_tokens)).validate()
    child = create(hp, tokenizer, seed)
    seed = child.seed
    src, dst = parent.model.params.named(), child.model.params.named()
    copied = [n for n in reference_names(hp) if n not in VOCAB_TENSORS and n != "pos_embedding"]
    for name in copied:
        dst[name][...] = src[name]
    copied_params, fresh = sum(dst[n].size for n in copied), list(VOCAB_TENSORS)
    fresh_params = sum(dst[n].size for n in VOCAB_TENSORS)
    if hp.pos_enc == "learned":
        copied_rows, pos_notes = _copy_position_rows(src["pos_embedding"], dst["pos_embedding"])
        copied += pos_notes[:1]
        fresh += pos_notes[1:]
        copied_params += dst["pos_embedding"][:copied_rows].size
        fresh_params += dst["pos_embedding"][copied_rows:].size
    shared = None
    if keep_shared_tokens:
        pairs = shared_token_pairs(parent.tokenizer, tokenizer)
        shared = len(pairs)
        if pairs:
            ci, pi = (np.array(ids, dtype=np.int64) for ids in zip(*pairs))
            dst["token_embedding"][ci] = src["token_embedding"][pi]          # (n, E) rows
            dst["head_map_weights"][:, ci] = src["head_map_weights"][:, pi]  # (E, n) columns
            dst["head_map_bias"][ci] = src["head_map_bias"][pi]
    report = InitWithReport(copied=copied, fresh=fresh, copied_params=copied_params, fresh_params=fresh_params,
                            shared_tokens=shared)
    fields = dict(parent=None if parent_path is None else str(parent_path),
                  parent_last_log_id=last_log_id(parent.logs),
                  hyperparameters=hp.to_dict(), seed=seed, tokenizer=tokenizer.summary(),
                  copied=len(copied), fresh=list(fresh))
    if shared is not None:
        fields["shared_tokens"] = shared
    child.logs = list(parent.logs) + [new_log(INIT_WITH, **fields)]  # replaces the child's own Init
    return child, report


def _copy_position_rows(src, dst):
    """Copy the first min(T_parent, T_child) rows of a learned pos_embedding; (rows copied, [what was
    copied, what is fresh (only when the child is longer)]) in words for the report."""
    T_old, T_new = src.shape[0], dst.shape[0]
    k = min(T_old, T_new)
    dst[:k] = src[:k]
    if T_old == T_new:
        return k, ["pos_embedding"]
    notes = [f"pos_embedding rows 0..{k - 1} (the parent's context is {T_old}, the child's {T_new})"]
    if T_new > T_old:
        notes.append(f"pos_embedding rows {k}..{T_new - 1} (drawn N(0, 0.02))")
    return k, notes


# ------------------------------------------------------------------------------------ grown models

def grown_checkpoint(checkpoint, hp, params, carry_moments, log, reset_optimizer=False, tokenizer=None):
    """(new Checkpoint, how) after a surgery that grew `checkpoint` into `hp` with `params` (insert-layer,
    insert-head, add-tokens). The optimizer: "kept" (its step, and its moments carried over by
    carry_moments({reference name: old moment}) -> {reference name: new moment}), "reset" (dropped:
    reset_optimizer; a ResetOptimizer log follows the surgery's), or "none" (there was none).
    log(how) -> the surgery's log entry; tokenizer: the new one (default: the old)."""
    old_opt = checkpoint.optimizer
    optimizer, how = None, "none" if old_opt is None else "reset" if reset_optimizer else "kept"
    if how == "kept":
        optimizer = {"step": old_opt.step}
        for key in ("m", "v"):
            optimizer[key] = carry_moments(named_views(checkpoint.hp, getattr(old_opt, key)))
    logs = list(checkpoint.logs) + [log(how)] + ([new_log(RESET_OPTIMIZER)] if reset_optimizer else [])
    grown = assemble(hp, params, checkpoint.tokenizer if tokenizer is None else tokenizer, logs,
                     checkpoint.train_state, optimizer, old_opt.config if old_opt is not None else None)
    return grown, how


# ------------------------------------------------------------------------------------ insert-layer

def insert_moves(hp, index):
    """{old name: new name} for inserting a layer at `index` into a model with hyperparameters hp:
    layers below `index` keep their number, the others move up by one; globals stay."""
    moves = {}
    for name in reference_names(hp):
        l = layer_of(name)
        moves[name] = name if l is None or l < index else rename_layer(name, l + 1)
    return moves


def make_near_identity(named, l):
    """Set layer l (a dict of reference-named views) to the near-identity init described above,
    leaving q/k/v and ff1 weights as they are (the caller's small random draw)."""
    for part in ("norm", "atten_norm"):
        named[f"{part}_{l}_coeff"][...] = 1.0
        named[f"{part}_{l}_bias"][...] = 0.0
    for name in (f"proj_{l}_weights", f"proj_{l}_bias", f"feedforward1_{l}_bias",
                 f"feedforward2_{l}_weights", f"feedforward2_{l}_bias"):
        named[name][...] = 0.0


@dataclass
class InsertLayerReport:
    index: int
    init: str
    seed: int
    moved: dict             # {old name: new name} for the tensors whose layer number changed
    new: list               # names of the new layer's tensors
    optimizer: str          # "kept" (moments moved, step kept), "reset", or "none" (there was none)
    step: int               # the optimizer step after the insertion


def insert_layer(checkpoint, index, init="near-identity", seed=None, reset_optimizer=False):
    """(new Checkpoint, InsertLayerReport): `checkpoint`'s model with a new layer at `index` (0..L; L
    appends). init: "random" (the reference: every tensor N(0, 0.02), biases 0, LN gains included)
    or "near-identity" (see the module docstring). The seed keys the new layer's random draws (None:
    a fresh one). The optimizer's moments move with their tensors, the new layer's start at zero and
    the step is kept, so warm-up does not restart; reset_optimizer drops them (the reference)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    old_hp, L = checkpoint.hp, checkpoint.hp.num_layers
    if not isinstance(index, (int, np.integer)) or not 0 <= index <= L:
        raise ValueError(f"the new layer's index must be between 0 and {L} (the number of layers; {L} "
                         f"appends), got {index}")
    index = int(index)
    hp = replace(old_hp, num_layers=L + 1).validate()
    seed = secrets.randbits(32) if seed is None else int(seed)
    params = Parameters(hp, checkpoint.model.dtype).init_reference(seed)  # the reference: draw all, overwrite
    dst = params.named()
    if init == "near-identity":
        make_near_identity(dst, index)
    moves, src = insert_moves(old_hp, index), checkpoint.model.params.named()
    for old, new in moves.items():
        dst[new][...] = src[old]

    grown, how = grown_checkpoint(  # the moments move with their tensors, the new layer's start at zero
        checkpoint, hp, params, lambda moments: {new: moments[old] for old, new in moves.items()},
        lambda how: new_log(INSERT_LAYER, index=index, init=init, seed=seed, optimizer=how), reset_optimizer)
    report = InsertLayerReport(index=index, init=init, seed=seed,
                               moved={o: n for o, n in moves.items() if o != n},
                               new=layer_names(hp, index), optimizer=how,
                               step=grown.step)
    return grown, report
