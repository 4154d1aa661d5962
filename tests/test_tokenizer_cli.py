"""`femtogpt train-bpe` and `count-tokens` through Click: outputs, files left behind, one-line errors,
and a 10 MB corpus trained and timed."""
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from femtogpt.cli import cli
from femtogpt.text.bpe import train_bpe
from femtogpt.text.build import build_tokenizer
from femtogpt.text.corpus import read_text
from femtogpt.text.tokenizer_files import load_tokenizer_file
from tests.test_tokenizer import make_corpus


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    return lambda *args: CliRunner().invoke(cli, list(map(str, args)))


def one_error_line(result):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_help():
    for cmd in ("train-bpe", "count-tokens"):
        res = CliRunner().invoke(cli, [cmd, "--help"])
        assert res.exit_code == 0 and "--dataset" in res.output


def test_train_bpe_then_count_tokens(run, tmp_path):
    Path("dataset.txt").write_text(make_corpus(100_000), encoding="utf-8")
    res = run("train-bpe", "--dataset", "dataset.txt", "--vocab-size", 400, "--reserve-tokens", 2,
              "--tokenizer-data", "out.json")
    assert res.exit_code == 0, res.output
    assert "wrote out.json: bpe, 402 tokens (2 reserved), case-sensitive" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.txt", "out.json"]   # no temp file left
    tok = load_tokenizer_file("out.json")
    text = read_text("dataset.txt")
    assert tok.to_json() == train_bpe(text, 400, reserve_tokens=2)[0].to_json()     # CLI = library

    res = run("count-tokens", "--model", "out.json", "--dataset", "dataset.txt", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["total"] == len(tok.encode(text)) == sum(t["count"] for t in out["tokens"])
    assert out["vocab_size"] == 402 and len(out["tokens"]) == 402 and out["unknown"] == 0
    assert all(set(t) == {"count", "id", "rank", "token"} for t in out["tokens"])
    assert [t["rank"] for t in out["tokens"]] == list(range(402))
    counts = [t["count"] for t in out["tokens"]]
    assert counts == sorted(counts, reverse=True) and out["tokens"][-1]["token"].startswith("<|reserved_")

    res = run("count-tokens", "--model", "out.json", "--dataset", "dataset.txt", "--top", 3)
    lines = res.output.splitlines()
    assert res.exit_code == 0 and len(lines) == 5 and lines[-1].startswith(f"total: {out['total']:,} tokens")


def test_train_bpe_bad_input_is_one_line(run):
    Path("empty.txt").write_text("")
    assert "empty" in one_error_line(run("train-bpe", "--dataset", "empty.txt"))
    assert "no such file" in one_error_line(run("train-bpe", "--dataset", "missing.txt"))
    assert not Path("tokenizer.json").exists()
    Path("one.txt").write_text("x")
    res = run("train-bpe", "--dataset", "one.txt", "--vocab-size", 512)
    assert res.exit_code == 0 and "only 256 tokens, fewer than the 512 asked for" in res.output
    assert load_tokenizer_file("tokenizer.json").vocab_size == 256
    res = run("train-bpe", "--dataset", "one.txt", "--vocab-size", 100)
    assert res.exit_code == 2 and "--vocab-size" in res.output
    res = run("train-bpe", "--dataset", "one.txt", "--tokenizer-data", "nodir/t.json")
    assert "does not exist" in one_error_line(res)


def test_train_bpe_on_10_mb_finishes_fast(run):
    start = time.perf_counter()
    Path("big.txt").write_text(make_corpus(10_000_000), encoding="utf-8")
    made = time.perf_counter()
    res = run("train-bpe", "--dataset", "big.txt", "--vocab-size", 1024, "--tokenizer-data", "big.json")
    took = time.perf_counter() - made
    print(f"\ntrain-bpe on 10 MB: {took:.1f} s (corpus generated in {made - start:.1f} s)")
    assert res.exit_code == 0, res.output
    assert "10.0M characters" in res.output and "1024 tokens" in res.output
    assert load_tokenizer_file("big.json").vocab_size == 1024
    assert took < 20


def test_count_tokens_reads_a_model_file_and_token_lists(run):
    tok = build_tokenizer("ascii", reserve_tokens=1)
    _tiny_model(tok).save("model.dat")
    Path("d.txt").write_text("hello <unk> wörld\n", encoding="utf-8")
    out = json.loads(run("count-tokens", "--model", "model.dat", "--dataset", "d.txt", "--json").output)
    assert out["total"] == len(tok.encode("hello <unk> wörld\n")) == 18 and out["unknown"] == 1
    assert out["tokens"][0] == {"count": 3, "id": tok.hf.token_to_id("l"), "rank": 0, "token": "l"}
    Path("list.json").write_text(json.dumps(["hello", " ", "w", "o", "r", "l", "d"]))
    Path("dir").mkdir()
    Path("dir/a.txt").write_text("hello world", encoding="utf-8")
    out = json.loads(run("count-tokens", "--model", "list.json", "--dataset", "dir", "--json").output)
    assert out["total"] == 7 and out["vocab_size"] == 8     # "hello" " " w o r l d


def _tiny_model(tok):
    from femtogpt.config import Hyperparameters
    from femtogpt.io.checkpoint import create

    hp = Hyperparameters(vocab_size=tok.vocab_size, num_tokens=4, embedding_degree=4, num_layers=1, num_heads=2)
    return create(hp, tok, seed=0)


def test_count_tokens_verifies_a_model_files_checksum(run):
    _tiny_model(build_tokenizer("byte")).save("model.dat")
    Path("d.txt").write_text("abc")
    assert run("count-tokens", "--model", "model.dat", "--dataset", "d.txt").exit_code == 0
    data = bytearray(Path("model.dat").read_bytes())
    data[len(data) // 2] ^= 0x01                            # one flipped bit in the tensors
    Path("model.dat").write_bytes(bytes(data))
    assert one_error_line(run("count-tokens", "--model", "model.dat", "--dataset", "d.txt")) == (
        "Error: --model model.dat: truncated or corrupt (checksum mismatch)")


def test_count_tokens_bad_files_are_one_line(run):
    Path("d.txt").write_text("abc")
    assert "no such file" in one_error_line(run("count-tokens", "--model", "nope.dat", "--dataset", "d.txt"))
    Path("fork.dat").write_bytes(b"\x00\x00\x00\x00\x01\x00\x00\x00garbage")
    assert "neither a tokenizer JSON nor a femtogpt model" in one_error_line(
        run("count-tokens", "--model", "fork.dat", "--dataset", "d.txt"))
    Path("t.json").write_text(build_tokenizer("byte").to_json())
    assert "no such file" in one_error_line(run("count-tokens", "--model", "t.json", "--dataset", "x.txt"))
    Path("bad.json").write_text("{broken")
    assert "not JSON" in one_error_line(run("count-tokens", "--model", "bad.json", "--dataset", "d.txt"))
