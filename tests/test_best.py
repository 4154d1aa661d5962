"""train/best.py, the --keep-best policy, without Click: the file's name, the loss a new best must beat,
and a failing save that warns instead of stopping training."""
import math

import pytest

from femtogpt.config import Hyperparameters
from femtogpt.io.checkpoint import Checkpoint, create
from femtogpt.io.logs import EVAL, TRAIN_SESSION, new_log
from femtogpt.io.model_file import ModelFileError
from femtogpt.text.build import build_tokenizer
from femtogpt.train.best import BestFileError, best_file_path, previous_best_loss, save_best


def tiny(seed=1):
    hp = Hyperparameters(vocab_size=101, num_tokens=4, embedding_degree=4, num_layers=1, num_heads=2)
    return create(hp, build_tokenizer("ascii"), seed=seed)


def judged(ckpt, dataset_hash="abc", val_fraction=0.1, val_losses=(2.5, 2.25)):
    """The checkpoint after a run on `dataset_hash` whose validation losses were `val_losses`."""
    ckpt.logs.append(new_log(TRAIN_SESSION, dataset_hash=dataset_hash, val_fraction=val_fraction))
    ckpt.logs += [new_log(EVAL, step=i, val_loss=v) for i, v in enumerate(val_losses)]
    return ckpt


def test_best_file_path():
    assert best_file_path("model.dat") == "model.best.dat"
    assert best_file_path("runs/a.b.dat") == "runs/a.b.best.dat"
    assert best_file_path("model") == "model.best.dat"


def test_no_best_file_yet_means_any_loss_is_a_best(tmp_path):
    assert previous_best_loss(tmp_path / "m.best.dat", tiny().logs, "abc", 0.1) == math.inf


def test_the_best_files_last_loss_counts_on_the_same_validation_data(tmp_path):
    ckpt = tiny()
    best = tmp_path / "m.best.dat"
    judged(ckpt).save(best)
    notes = []
    assert previous_best_loss(best, ckpt.logs, "abc", 0.1, note=notes.append) == 2.25 and notes == []
    for other in (("xyz", 0.1), ("abc", 0.2)):          # another dataset, another --val-fraction
        assert previous_best_loss(best, ckpt.logs, *other, note=notes.append) == math.inf
    assert len(notes) == 2 and notes[0] == (f"note: {best} was judged on other validation data; this run's "
                                            f"first validation loss replaces it")


def test_another_models_or_an_unreadable_best_file_is_refused(tmp_path):
    best = tmp_path / "m.best.dat"
    judged(tiny(seed=1)).save(best)
    with pytest.raises(BestFileError, match="is the best file of another model"):
        previous_best_loss(best, tiny(seed=2).logs, "abc", 0.1)
    best.write_bytes(b"garbage")
    with pytest.raises(BestFileError, match=r"\(the --keep-best file; move it away to start a new one\)$"):
        previous_best_loss(best, tiny().logs, "abc", 0.1)


def test_save_best_warns_and_returns_false_when_the_save_fails(tmp_path, monkeypatch):
    ckpt, best = tiny(), tmp_path / "m.best.dat"
    assert save_best(ckpt, best) is True and best.exists()

    def full_disk(self, path):
        raise ModelFileError(f"{path}: cannot save: no space left on device; nothing was written")

    monkeypatch.setattr(Checkpoint, "save", full_disk)
    warnings = []
    assert save_best(ckpt, best, warn=warnings.append) is False
    assert warnings == [f"warning: {best}: cannot save: no space left on device; nothing was written; "
                        f"training goes on"]
