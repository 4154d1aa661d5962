"""Log entries: the kinds a model file's history holds, and `new_log` to make one.

Every entry is a map {"id": 32 hex digits, "kind": one of the kinds below, **fields}, oldest first.
The first five kinds are the reference's (§3.4), the rest are ours. Use these constants, never the
literal strings, so a new kind is one line here.
"""
import secrets

import numpy as np

INIT = "Init"                       # hyperparameters, seed
TRAIN_SESSION = "TrainSession"      # dropout, seed, batch_size, start_step, dataset, dataset_hash, val_fraction
TRAIN_STEP = "TrainStep"            # step, loss, elapsed_ms, lr
INSERT_LAYER = "InsertLayer"        # index, init
RESET_OPTIMIZER = "ResetOptimizer"
INIT_WITH = "InitWith"              # parent, tokenizer, copied
EVAL = "Eval"                       # step, val_loss
LOG_KINDS = (INIT, TRAIN_SESSION, TRAIN_STEP, INSERT_LAYER, RESET_OPTIMIZER, INIT_WITH, EVAL)


def new_log(kind, **fields):
    """A log entry with a fresh random 128-bit id as 32 hex digits, like the reference's."""
    if "id" in fields or "kind" in fields:
        raise ValueError("a log's id and kind are not fields")
    fields = {k: v.item() if isinstance(v, np.generic) else v for k, v in fields.items()}  # numpy scalars
    return {"id": secrets.token_hex(16), "kind": kind, **fields}
