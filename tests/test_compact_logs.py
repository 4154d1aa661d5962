"""Training steps are logged compactly (issue 15): 6 bytes a step in TrainSteps blocks, 100k steps add
well under 1 MB; files with the old one-map-per-step TrainStep logs still load and read the same; every
reader (info, loss, plot, compare) sees one history either way."""
import numpy as np
import pytest

from femtogpt.config import Hyperparameters
from femtogpt.growth.compare import lineage
from femtogpt.io import logs as L
from femtogpt.io.checkpoint import create, load
from femtogpt.io.info import model_summary, training_losses
from femtogpt.io.model_file import ModelFileError
from femtogpt.text.build import build_tokenizer
from femtogpt.tools.plotting import curves_from_logs
from tests.hostile_files import crafted, small_model


def tiny_checkpoint():
    tok = build_tokenizer("ascii")
    hp = Hyperparameters(vocab_size=tok.vocab_size, num_tokens=8, embedding_degree=8, num_layers=1, num_heads=2)
    return create(hp, tok, seed=1)


def test_100k_steps_with_validation_every_100_add_well_under_1_mb(tmp_path):
    ckpt = tiny_checkpoint()
    ckpt.save(tmp_path / "before.dat")
    ckpt.logs.append(L.new_log(L.TRAIN_SESSION, dropout=0.0, seed=1, batch_size=32, start_step=0))
    rng = np.random.default_rng(0)
    for step in range(1, 100_001):
        L.append_step(ckpt.logs, step, float(rng.uniform(1, 5)), int(rng.integers(5, 500)))
        if step % 100 == 0:
            ckpt.logs.append(L.new_log(L.EVAL, step=step, val_loss=2.0))
    ckpt.save(tmp_path / "after.dat")
    added = (tmp_path / "after.dat").stat().st_size - (tmp_path / "before.dat").stat().st_size
    assert added < 800_000, added  # 6 bytes a step, plus a block and an Eval per 100 steps
    loaded = load(tmp_path / "after.dat")
    steps = [log for log in L.expanded(loaded.logs) if log["kind"] == L.TRAIN_STEP]
    assert len(steps) == 100_000 and [s["step"] for s in steps[:3]] == [1, 2, 3]
    assert L.step_count(loaded.logs) == 100_000


def test_a_file_with_old_step_maps_and_new_blocks_reads_as_one_history(tmp_path):
    old = small_model(tmp_path / "old.dat")  # its logs: TrainStep maps, as femtogpt wrote them until now
    ckpt = load(old)
    before = [log for log in L.expanded(ckpt.logs) if log["kind"] == L.TRAIN_STEP]
    assert [s["loss"] for s in before] == [4.5, 4.25] and L.TRAIN_STEPS not in [log["kind"] for log in ckpt.logs]
    L.append_step(ckpt.logs, 3, 4.0, 12)
    L.append_step(ckpt.logs, 4, 3.75, 65_536 * 2)  # a slow step saturates at 65,535 ms
    ckpt.save(tmp_path / "new.dat")
    summary = model_summary(tmp_path / "new.dat")
    assert summary["trained_steps"] == 4 and summary["last_loss"] == 3.75
    assert training_losses(tmp_path / "new.dat", 10) == [4.5, 4.25, 4.0, 3.75]
    x, y = curves_from_logs(load(tmp_path / "new.dat").logs)["train"]
    assert x == [1, 2, 3, 4] and y == [4.5, 4.25, 4.0, 3.75]
    assert L.expanded(load(tmp_path / "new.dat").logs)[-1]["elapsed_ms"] == 65_535


def test_lineage_sees_steps_inside_a_block():
    # a copy taken mid-run (after a save) is the parent of the file the run goes on writing
    logs = [L.new_log(L.INIT, seed=1)]
    for step in range(1, 6):
        L.append_step(logs, step, 3.0, 10)
    copy = [dict(log) for log in logs]
    copy[-1] = {**logs[-1], "loss": bytes(logs[-1]["loss"]), "elapsed_ms": bytes(logs[-1]["elapsed_ms"])}
    for step in range(6, 9):
        L.append_step(logs, step, 2.0, 10)
    lin = lineage(L.expanded(copy), L.expanded(logs))
    assert (lin.relation, lin.shared_steps, lin.steps_b) == ("a_parent_of_b", 5, 3)
    assert L.last_log_id(copy) == L.expanded(copy)[-1]["id"]


@pytest.mark.parametrize("block, expected", [
    ({"first_step": 1, "loss": b"\0" * 8, "elapsed_ms": b"\0" * 2}, "has 8 bytes of loss and 2 of elapsed_ms"),
    ({"first_step": 1, "loss": np.float32([np.inf]).tobytes(), "elapsed_ms": b"\0\0"}, "has an infinite loss"),
    ({"first_step": -1, "loss": b"", "elapsed_ms": b""}, "has first_step -1"),
    ({"first_step": 1, "loss": [1.0], "elapsed_ms": b""}, "has loss [1.0], expected bytes"),
])
def test_a_damaged_step_block_is_one_line(tmp_path, block, expected):
    path = crafted(tmp_path / "b.dat", small_model(tmp_path / "base.dat"),
                   lambda e: e["logs"].append({"id": "ab" * 16, "kind": L.TRAIN_STEPS, **block}))
    with pytest.raises(ModelFileError) as info:
        load(path)
    assert expected in str(info.value) and "\n" not in str(info.value)
