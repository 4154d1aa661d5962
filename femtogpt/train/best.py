"""The best-model policy of `train --keep-best`: MODEL.best.dat beside the model holds the weights of the
lowest validation loss seen, and only a lower loss on the same validation data replaces it.

Here: where the best file lives, which loss a new best must beat (the existing best file's, when it is
this model's and was judged on the same data), and saving it without stopping training on a failure.
Not here: when validation runs (train/loop.py calls `save_best` at each new lowest loss).
"""
import math
from pathlib import Path

from femtogpt.io.logs import EVAL, TRAIN_SESSION
from femtogpt.io.model_file import ModelFileError, peek_header


class BestFileError(ValueError):
    """The existing best file cannot be used (unreadable, or another model's); one line naming it."""


def best_file_path(model_path):
    """model.dat -> model.best.dat (the --keep-best file beside the model)."""
    path = Path(model_path)
    return str(path.with_name(f"{path.stem}.best{path.suffix or '.dat'}"))


def previous_best_loss(best_path, logs, dataset_hash, val_fraction, note=None):
    """The validation loss a new best must beat: the existing best file's, when it is this model's
    (the same Init log as `logs`) judged on the same validation data (same dataset hash and
    val_fraction); else inf, with a note for `note(str)` when a best file of other data is there.
    Raises BestFileError when the file cannot be read or belongs to another model."""
    if not Path(best_path).exists():
        return math.inf
    try:
        best_logs = peek_header(best_path)["logs"]
    except ModelFileError as exc:
        raise BestFileError(f"{exc} (the --keep-best file; move it away to start a new one)") from None
    if not (best_logs and logs and best_logs[0]["id"] == logs[0]["id"]):
        raise BestFileError(f"{best_path} is the best file of another model (a different init); move it "
                            f"away or train without --keep-best")
    sessions = [log for log in best_logs if log["kind"] == TRAIN_SESSION]
    evals = [log for log in best_logs if log["kind"] == EVAL]
    if (sessions and evals and sessions[-1].get("dataset_hash") == dataset_hash
            and sessions[-1].get("val_fraction") == val_fraction):
        return float(evals[-1]["val_loss"])
    if note is not None:
        note(f"note: {best_path} was judged on other validation data; this run's first validation "
             f"loss replaces it")
    return math.inf


def save_best(ckpt, best_path, warn=None):
    """Save `ckpt` as the best file. A failure there (a full disk, say) warns through `warn(str)` and
    returns False: training goes on, and the model itself is still saved on schedule."""
    try:
        ckpt.save(best_path)
        return True
    except ModelFileError as exc:
        if warn is not None:
            warn(f"warning: {exc}; training goes on")
        return False
