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
TRAIN_STEPS = "TrainSteps"          # first_step, loss (float32 bytes), elapsed_ms (uint16 bytes): a block of steps
TRACK = "Track"                     # step, values (float32 bytes; names: the TrainSession's track_names)
SWAP_KQ = "SwapKQ"                  # swap-kq swapped every head's query and key weights
INSERT_HEAD = "InsertHead"          # head (the new head's index, in every layer), head_size, seed, optimizer
ADD_TOKENS = "AddTokens"            # tokens (list of strings), first_id (the old V), init
REPLACE_RESERVED = "ReplaceReserved"  # token_id, token, reserved (the placeholder it replaced), special
LOG_KINDS = (INIT, TRAIN_SESSION, TRAIN_STEP, INSERT_LAYER, RESET_OPTIMIZER, INIT_WITH, EVAL, TRAIN_STEPS, TRACK,
             SWAP_KQ, INSERT_HEAD, ADD_TOKENS, REPLACE_RESERVED)

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
                    "units": _integer(1), "processes": _integer(1), "tokens_per_step": _integer(1),
                    "track_names": _strings,
                    "start_step": _STEP, "dataset": _STR, "dataset_hash": _STR, "hash_kind": _STR,
                    "val_fraction": _number(0.0, 1.0)},
    TRAIN_STEP: {"step": _STEP, "loss": _LOSS, "elapsed_ms": _integer(), "lr": _number(0.0)},
    INSERT_LAYER: {"index": _integer(), "init": _STR, "seed": _SEED, "optimizer": _STR},
    INSERT_HEAD: {"head": _integer(), "head_size": _integer(1), "seed": _SEED, "optimizer": _STR},
    RESET_OPTIMIZER: {},
    SWAP_KQ: {},
    ADD_TOKENS: {"tokens": _strings, "first_id": _integer(), "init": _STR},
    REPLACE_RESERVED: {"token_id": _integer(), "token": _STR, "reserved": _STR, "special": _of(bool, what="true or false")},
    INIT_WITH: {"parent": _STR_OR_NONE, "parent_last_log_id": _STR_OR_NONE, "hyperparameters": _MAP,
                "seed": _SEED, "tokenizer": _STR, "copied": _integer(), "fresh": _strings,
                "shared_tokens": _integer()},
    EVAL: {"step": _STEP, "val_loss": _LOSS, "seconds": _number(0.0), "tokens": _integer()},
    TRACK: {"step": _STEP, "values": _of(bytes, bytearray, what="bytes")},
    TRAIN_STEPS: {"first_step": _STEP, "loss": _of(bytes, bytearray, what="bytes"),
                  "elapsed_ms": _of(bytes, bytearray, what="bytes")},
}
REQUIRED = {TRAIN_STEP: ("step", "loss"), INSERT_LAYER: ("index",), INSERT_HEAD: ("head",),
            EVAL: ("step", "val_loss"),
            TRACK: ("step", "values"),
            TRAIN_STEPS: ("first_step", "loss", "elapsed_ms")}


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
    if kind == TRACK and len(log["values"]) % 4:
        return f"has {len(log['values'])} bytes of values, expected 4 per statistic"
    if kind == TRAIN_STEPS:
        n = len(log["loss"]) // 4
        if len(log["loss"]) % 4 or len(log["elapsed_ms"]) != 2 * n:
            return (f"has {len(log['loss'])} bytes of loss and {len(log['elapsed_ms'])} of elapsed_ms, "
                    f"expected 4 and 2 per step")
        if n and np.isinf(np.frombuffer(log["loss"], "<f4")).any():
            return "has an infinite loss"
    return None


# ---------------------------------------------------------------- training steps, compactly
#
# Training appends its steps to a TrainSteps block (6 bytes a step: the loss as float32, the step's
# milliseconds as uint16, saturating at 65,535), a new block after every other log (an Eval, a new
# session), so the order of the logs stays the order of events. Files written before blocks existed
# hold one TrainStep map per step (about 100 bytes); both read the same through `expanded`.

def new_step_block(first_step):
    return new_log(TRAIN_STEPS, first_step=int(first_step), loss=bytearray(), elapsed_ms=bytearray())


def append_step(logs, step, loss, elapsed_ms):
    """Record one training step at the end of `logs`: in the last log when it is a block that ends at
    step - 1, else in a new block."""
    block = logs[-1] if logs else None
    if (block is None or block.get("kind") != TRAIN_STEPS or not isinstance(block["loss"], bytearray)
            or block["first_step"] + len(block["loss"]) // 4 != step):
        block = new_step_block(step)
        logs.append(block)
    block["loss"] += np.float32(loss).astype("<f4").tobytes()
    block["elapsed_ms"] += np.uint16(min(max(int(elapsed_ms), 0), 65535)).astype("<u2").tobytes()


def block_steps(block):
    """(steps, losses, elapsed_ms) arrays of a TrainSteps block."""
    losses = np.frombuffer(bytes(block["loss"]), "<f4")
    elapsed = np.frombuffer(bytes(block["elapsed_ms"]), "<u2")
    return np.arange(block["first_step"], block["first_step"] + len(losses)), losses, elapsed


def last_log_id(logs):
    """The id of the last entry of `logs` as `expanded` shows it (None when there is none)."""
    if not logs:
        return None
    last = logs[-1]
    if last.get("kind") == TRAIN_STEPS and len(last["loss"]) >= 4:
        return f"{last['id']}/{len(last['loss']) // 4 - 1}"
    return last.get("id")


def step_count(logs):
    """How many training steps the logs record (TrainStep maps and blocks)."""
    return sum(len(log["loss"]) // 4 if log.get("kind") == TRAIN_STEPS else 1
               for log in logs if log.get("kind") in (TRAIN_STEP, TRAIN_STEPS))


def timeline(logs, num_tokens):
    """[(entry, steps, seconds, tokens)] for every entry of expanded(logs): the training steps, the
    seconds they took and the tokens they trained on up to and including it, counted across sessions.
    A step counts the tokens_per_step of its TrainSession (batch_size x num_tokens for files that
    predate that field)."""
    out, steps, seconds, tokens, per_step = [], 0, 0.0, 0, 0
    for log in expanded(logs):
        kind = log.get("kind")
        if kind == TRAIN_SESSION:
            per_step = log.get("tokens_per_step") or int(log.get("batch_size") or 0) * num_tokens
        elif kind == TRAIN_STEP:
            steps += 1
            seconds += int(log.get("elapsed_ms") or 0) / 1000
            tokens += per_step
        out.append((log, steps, seconds, tokens))
    return out


def expanded(logs):
    """The logs with every TrainSteps block written out as TrainStep maps (step, loss, elapsed_ms, and
    the id "<block id>/<index>", so histories compare step by step): what readers of the history
    (info, loss, plot, compare) iterate over, whichever form a file holds."""
    out = []
    for log in logs:
        if log.get("kind") != TRAIN_STEPS:
            out.append(log)
            continue
        steps, losses, elapsed = block_steps(log)
        out.extend({"id": f"{log['id']}/{i}", "kind": TRAIN_STEP, "step": int(s), "loss": float(x),
                    "elapsed_ms": int(ms)} for i, (s, x, ms) in enumerate(zip(steps, losses, elapsed)))
    return out


def new_log(kind, **fields):
    """A log entry with a fresh random 128-bit id as 32 hex digits, like the reference's."""
    if "id" in fields or "kind" in fields:
        raise ValueError("a log's id and kind are not fields")
    fields = {k: v.item() if isinstance(v, np.generic) else v for k, v in fields.items()}  # numpy scalars
    return {"id": secrets.token_hex(16), "kind": kind, **fields}
