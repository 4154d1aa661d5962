"""Importing the fork's own model files: weights, moments, token ids and logs survive, and the
imported model computes the fork's logits through its own tokenizer."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from femtogpt.io.model_file import load_model_file
from femtogpt.cli import cli
from femtogpt.io.fork_reader import read_fork_model
from femtogpt.io.checkpoint import load
from tests.fixture_paths import FORK_FIXTURES as FIXTURES


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("name", ["tiny_more", "tiny_abs", "tiny_inserted", "tiny_bpe_child"])
def test_import_keeps_weights_logs_and_logits(tmp_path, name):
    out = tmp_path / f"{name}.model"
    result = run("import-fork", FIXTURES / f"{name}.dat", out)
    assert result.exit_code == 0, result.output
    fork = read_fork_model(FIXTURES / f"{name}.dat")
    mf = load_model_file(out)
    for tensor, value in fork.tensors.items():
        np.testing.assert_array_equal(mf.tensors[tensor], value)
    assert [log["id"] for log in mf.logs] == [log["id"] for log in fork.logs]
    fork_losses = [np.float32(log["avg_loss"]) for log in fork.logs if log["kind"] == "TrainStep"]
    assert [np.float32(log["loss"]) for log in mf.logs if log["kind"] == "TrainStep"] == fork_losses
    if fork.optimizer_state:
        assert mf.optimizer["step"] == fork.optimizer_step
        np.testing.assert_array_equal(mf.optimizer["m"]["proj_0_weights"],
                                      fork.optimizer_state["proj_0_weights_m"])
    else:
        assert mf.optimizer is None
    session = load(out)
    for token_id, raw in fork.tokens.items():
        assert session.tokenizer.token_str(token_id) == raw.decode()
    expected = json.loads((FIXTURES / f"expected_logits_{name}.json").read_text())
    logits = session.model.logits(np.array([expected["input_ids"]]))[0]
    np.testing.assert_allclose(logits, np.array(expected["logits"], np.float32), atol=1e-4)


def test_imported_char_model_encodes_the_text_as_the_fork(tmp_path):
    run("import-fork", FIXTURES / "tiny_more.dat", tmp_path / "m.model")
    session = load(tmp_path / "m.model")
    expected = json.loads((FIXTURES / "expected_logits_tiny_more.json").read_text())
    text = (FIXTURES / "dataset.txt").read_text()
    assert list(session.tokenizer.encode(text)[:17]) == expected["token_ids_17"]


def test_imported_models_keep_their_lineage(tmp_path):
    for name in ("tiny_more", "tiny_inserted"):
        run("import-fork", FIXTURES / f"{name}.dat", tmp_path / f"{name}.model")
    out = run("compare", tmp_path / "tiny_inserted.model", tmp_path / "tiny_more.model", "--limit", "1").output
    assert "unrelated" not in out


def test_bad_fork_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.dat"
    bad.write_bytes((FIXTURES / "tiny_more.dat").read_bytes()[:1000])
    result = run("import-fork", bad, tmp_path / "x.model")
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "bad.dat" in result.output
    assert not (tmp_path / "x.model").exists()


def test_compare_reads_fork_files_directly(tmp_path):
    # compare on the fork's .dat files gives exactly what it gives on their imports
    a, b = FIXTURES / "tiny_more.dat", FIXTURES / "tiny_inserted.dat"
    assert run("import-fork", a, tmp_path / "a.model").exit_code == 0
    assert run("import-fork", b, tmp_path / "b.model").exit_code == 0
    direct = run("compare", a, b, "--limit", 0).output
    imported = run("compare", tmp_path / "a.model", tmp_path / "b.model", "--limit", 0).output
    assert direct == imported.replace(str(tmp_path / "a.model"), str(a)).replace(str(tmp_path / "b.model"), str(b))
    assert "key: " in direct and "num_layers differs" in direct
    # a file that is neither kind is reported as a femtogpt model file, in one line
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x00" * 100)
    r = run("compare", a, junk)
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and "junk.dat" in r.output
