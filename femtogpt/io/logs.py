"""Log entries: the kinds a model file's history holds, each kind's fields, and `new_log` to make one.

Every entry is a map {"id": 32 hex digits, "kind": one of the kinds below, **fields}, oldest first.
The first five kinds are the reference's (§3.4), the rest are ours. Use these constants, never the
literal strings, so a new kind is one line here (and one line of FIELDS).

`log_problem(log)` checks one entry read from a file against FIELDS: a listed field must have its
type and range (bool is not an int; a loss is a float, finite or NaN), a REQUIRED one must be there.
Fields not listed, and kinds not listed (a newer femtogpt may write them), are kept as they are: what
prints them escapes their strings (text/printable.py).
"""
import math
import secrets

import numpy as np

INIT = "Init"                       # hyperparameters, seed
TRAIN_SESSION = "TrainSession"      # dropout, seed, batch_size, units, processes, start_step, dataset, dataset_hash, val_fraction
TRAIN_STEP = "TrainStep"            # step, loss, elapsed_ms, lr
INSERT_LAYER = "InsertLayer"        # index, init
RESET_OPTIMIZER = "ResetOptimizer"
INIT_WITH = "InitWith"              # parent, tokenizer, copied
EVAL = "Eval"                       # step, val_loss
LOG_KINDS = (INIT, TRAIN_SESSION, TRAIN_STEP, INSERT_LAYER, RESET_OPTIMIZER, INIT_WITH, EVAL)

_U64 = 2**64 - 1


def _integer(lo=0, hi=_U64):
    def check(v):
        return type(v) is int and lo <= v <= hi
    check.expected = f"an integer >= {lo}" if hi == _U64 else f"an integer in {lo}..{hi}"
    return check


def _number(lo=-math.inf, hi=math.inf, nan=False):
    def check(v):  # an int where a float is expected is fine (msgpack keeps 2.0 a float, a hand edit may not)
        if type(v) not in (int, float):
            return False
        return math.isfinite(v) and lo <= v <= hi if not math.isnan(v) else nan
    check.expected = "a number" + (f" in [{lo}, {hi}]" if math.isfinite(hi) else f" >= {lo}" if math.isfinite(lo)
                                   else " (finite or NaN)" if nan else " (finite)")
    return check


def _of(*types, what):
    def check(v):
        return type(v) in types
    check.expected = what
    return check


def _strings(v):
    return type(v) is list and all(type(s) is str for s in v)


_strings.expected = "a list of strings"

_SEED = _integer(-2**63, _U64)      # a log records the seed it was given; train_state's is checked apart
_STR, _MAP, _STEP = _of(str, what="a string"), _of(dict, what="a map"), _integer()
_STR_OR_NONE = _of(str, type(None), what="a string or None")
_LOSS = _number(nan=True)           # NaN is a loss that was seen (the run stopped on it), inf is not

# kind: {field: check}; REQUIRED: the fields every writer of this file version puts in a kind
FIELDS = {
    INIT: {"hyperparameters": _MAP, "seed": _SEED},
    TRAIN_SESSION: {"dropout": _number(0.0, 1.0), "seed": _SEED, "batch_size": _integer(1),
                    "units": _integer(1), "processes": _integer(1),
                    "start_step": _STEP, "dataset": _STR, "dataset_hash": _STR, "hash_kind": _STR,
                    "val_fraction": _number(0.0, 1.0)},
    TRAIN_STEP: {"step": _STEP, "loss": _LOSS, "elapsed_ms": _integer(), "lr": _number(0.0)},
    INSERT_LAYER: {"index": _integer(), "init": _STR, "seed": _SEED, "optimizer": _STR},
    RESET_OPTIMIZER: {},
    INIT_WITH: {"parent": _STR_OR_NONE, "parent_last_log_id": _STR_OR_NONE, "hyperparameters": _MAP,
                "seed": _SEED, "tokenizer": _STR, "copied": _integer(), "fresh": _strings,
                "shared_tokens": _integer()},
    EVAL: {"step": _STEP, "val_loss": _LOSS},
}
REQUIRED = {TRAIN_STEP: ("step", "loss"), INSERT_LAYER: ("index",), EVAL: ("step", "val_loss")}


def log_problem(log):
    """What is wrong with the fields of one log entry read from a file (id and kind aside), or None.
    The answer names the field and shows the value with repr(), so it prints safely."""
    kind = log["kind"]
    for name in REQUIRED.get(kind, ()):
        if name not in log:
            return f"has no {name}"
    for name, check in FIELDS.get(kind, {}).items():
        if name in log and not check(log[name]):
            value = repr(log[name])
            value = value if len(value) <= 40 else value[:37] + "..."
            return f"has {name} {value}, expected {check.expected}"
    return None


def new_log(kind, **fields):
    """A log entry with a fresh random 128-bit id as 32 hex digits, like the reference's."""
    if "id" in fields or "kind" in fields:
        raise ValueError("a log's id and kind are not fields")
    fields = {k: v.item() if isinstance(v, np.generic) else v for k, v in fields.items()}  # numpy scalars
    return {"id": secrets.token_hex(16), "kind": kind, **fields}
