"""io/info.py without Click: what `info` and `loss` report about a model file."""
import json
from pathlib import Path

import pytest

from femtogpt.config import Hyperparameters
from femtogpt.io.checkpoint import create
from femtogpt.io.info import model_summary, summary_lines, training_losses
from femtogpt.io.logs import EVAL, TRAIN_STEP, new_log
from femtogpt.io.model_file import ModelFileError
from femtogpt.text.build import build_tokenizer


@pytest.fixture
def model(tmp_path):
    tok = build_tokenizer("ascii", case_insensitive=True)   # 75 tokens: no uppercase letters
    hp = Hyperparameters(vocab_size=tok.vocab_size, num_tokens=4, embedding_degree=4, num_layers=1, num_heads=2)
    ckpt = create(hp, tok, seed=7)
    ckpt.ensure_optimizer().step = 3
    ckpt.logs += [new_log(TRAIN_STEP, step=s, loss=4.0 - s, elapsed_ms=10, lr=1e-3) for s in (1, 2, 3)]
    ckpt.logs.append(new_log(EVAL, step=3, val_loss=1.5))
    path = tmp_path / "m.dat"
    ckpt.save(path)
    return path


def test_model_summary(model):
    s = model_summary(model)
    assert s["model"] == str(model) and s["file_size"] == model.stat().st_size
    assert s["hyperparameters"]["head_size"] == 2 and s["num_params"] > 0
    assert (s["optimizer_step"], s["trained_steps"], s["last_loss"], s["seed"]) == (3, 3, 1.0, 7)
    assert s["tokenizer"]["kind"] == "ascii" and s["tokenizer"]["vocab_size"] == 75
    assert [h["kind"] for h in s["history"]] == ["Init", "TrainSteps"]
    assert s["history"][1]["last_val_loss"] == 1.5
    json.dumps(s)                                       # `info --json` prints it as is


def test_summary_lines(model):
    lines = summary_lines(model_summary(model))
    assert lines[0].startswith(f"{model}: ") and lines[0].endswith(" bytes")
    assert lines[1] == ("  vocab 75, context 4, embedding 4, layers 1, heads 2 (head size 2), "
                        "positional encoding absolute")
    assert lines[2] == "  tokenizer: ascii, 75 tokens, case-insensitive"
    assert lines[3] == "  optimizer: step 3; trained 3 steps, last loss 1.0000"
    assert lines[4] == "  history:" and len(lines) == 7
    assert lines[6].startswith("    3 steps (1..3), loss 3.0000 -> 1.0000, val 1.5000")


def test_training_losses(model):
    assert training_losses(model, 2) == [2.0, 1.0]
    assert training_losses(model, 10) == [3.0, 2.0, 1.0]
    assert training_losses(model, 0) == [3.0, 2.0, 1.0]  # 0: all, as --limit 0 everywhere


def test_a_damaged_file_raises_one_line(model):
    data = bytearray(Path(model).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(model).write_bytes(bytes(data))
    for read in (model_summary, lambda p: training_losses(p, 1)):
        with pytest.raises(ModelFileError, match="checksum mismatch"):
            read(model)
