"""One flag vocabulary (issue 15): --input/--output for surgery (old spellings kept, hidden), --limit and
--top 0 mean "all" everywhere, count-tokens reads model.dat by default, and init/init-with take a model
file as their tokenizer source."""
import json

import pytest

from femtogpt.io.checkpoint import load
from tests.run_cli import run, tiny_model_folder


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    tiny_model_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_init_with_takes_input_and_output_and_still_the_old_parent_and_child(workdir):
    run("init-with", "--input", "model.dat", "--output", "a.dat", "--tokenizer", "byte", "--seed", 1)
    run("init-with", "--parent", "model.dat", "--child", "b.dat", "--tokenizer", "byte", "--seed", 1)
    assert load(workdir / "a.dat").hp == load(workdir / "b.dat").hp
    help_text = run("init-with", "--help").output
    assert "--input" in help_text and "--output" in help_text
    assert "--parent" not in help_text and "--child" not in help_text  # hidden aliases


def test_init_and_init_with_take_the_tokenizer_of_a_model_file(workdir):
    run("init", "--model", "bytes.dat", "--tokenizer", "byte", "--reserve-tokens", 3, "--num-tokens", 8,
        "--embedding-degree", 8, "--num-layers", 1, "--num-heads", 2, "--seed", 2)
    run("init", "--model", "same.dat", "--tokenizer-from", "bytes.dat", "--num-tokens", 8, "--embedding-degree", 8,
        "--num-layers", 1, "--num-heads", 2)
    run("init-with", "--input", "model.dat", "--output", "child.dat", "--tokenizer-from", "bytes.dat")
    source = load(workdir / "bytes.dat").tokenizer
    for name in ("same.dat", "child.dat"):
        tok = load(workdir / name).tokenizer
        assert tok.to_json() == source.to_json() and tok.meta() == source.meta() and tok.vocab_size == 259
    result = run("init", "--model", "x.dat", "--tokenizer-from", "bytes.dat", "--tokenizer", "char", ok=False)
    assert result.exit_code == 1 and "--tokenizer-from takes bytes.dat's tokenizer as it is; drop --tokenizer" \
        in result.output
    (workdir / "junk.dat").write_bytes(b"not a model")
    result = run("init", "--model", "y.dat", "--tokenizer-from", "junk.dat", ok=False)
    assert result.exit_code == 1 and result.output.startswith("Error: --tokenizer-from junk.dat: not a femtogpt")


def test_limit_and_top_0_mean_all_and_count_tokens_reads_model_dat(workdir):
    run("train", "--steps", 3, "--batch-size", 2, "--quiet")
    assert len(run("loss", "--limit", 0).output.split()) == 3
    counted = json.loads(run("count-tokens", "--json").output)  # --model model.dat by default
    assert len(counted["tokens"]) == 101 == len(json.loads(run("count-tokens", "--json", "--top", 0).output)["tokens"])
    assert len(json.loads(run("count-tokens", "--json", "--top", 5).output)["tokens"]) == 5
    tok = load(workdir / "model.dat").tokenizer
    (workdir / "tok.json").write_text(tok.to_json())
    assert json.loads(run("count-tokens", "--json", "--tokenizer-data", "tok.json").output)["total"] == counted["total"]
