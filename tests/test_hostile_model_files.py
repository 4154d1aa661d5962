"""Hostile files, one test per failure class (issue 13): the one validated loader checks structure, types
and ranges before it allocates; strings from files print escaped; the Rust tokenizer's errors and panics
are one line; a damaged token cache is rebuilt. Fork files get the same bounds."""
import dataclasses
import json
import math
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from femtogpt.io.checkpoint import from_model_file, load
from femtogpt.io.info import model_summary, summary_lines
from femtogpt.io.model_file import ModelFileError, load_model_file
from femtogpt.text.tokenizer import TextTokenizer, TokenizerError
from tests.hostile_files import CATASTROPHIC_REGEX, crafted, entries, run_limited, set_hp, small_model, with_regex
from tests.run_cli import run


@pytest.fixture
def base(tmp_path):
    return small_model(tmp_path / "base.dat")


def load_error(path):
    with pytest.raises(ModelFileError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


# ------------------------------------------------------------------------ sizes bounded by the file

@pytest.mark.parametrize("change, expected", [
    (set_hp(num_layers=10**7), "num_layers 10000000 and num_heads 2 call for 160,000,005 tensors, the file holds 37"),
    (set_hp(num_layers=2**40), "call for 17,592,186,044,421 tensors"),
    (set_hp(embedding_degree=2**30, num_heads=2**30, head_size=1), "num_heads 1073741824 call for"),
    (set_hp(vocab_size=2**27), "tokenizer_meta.vocab_size is 101, expected 134217728"),
    (set_hp(embedding_degree=2**20, head_size=2**19),
     "tensor token_embedding has shape [101, 8], expected [101, 1048576]"),
    (lambda e: e["tensors"]["token_embedding"].update(shape=[2**31, 2**31]),
     "tensor token_embedding has shape [2147483648, 2147483648], expected [101, 8]"),
    (lambda e: e["tensors"]["head_map_bias"].update(data=b"\0" * 3), "tensor head_map_bias has 3 bytes of data"),
])
def test_hyperparameters_bigger_than_the_tensor_data_are_refused_before_allocating(base, tmp_path, change, expected):
    path = crafted(tmp_path / "big.dat", base, change)
    tracemalloc.start()
    message = load_error(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert expected in message, message
    assert peak < 20e6, peak  # no names built, no arrays made


def test_a_model_too_big_for_this_machine_says_how_much_it_needs(base, tmp_path, monkeypatch):
    # num_tokens is bounded by no tensor: the position table and the KV cache are, by the memory check
    path = crafted(tmp_path / "long.dat", base, set_hp(num_tokens=2**28))
    mf = load_model_file(path)           # the file itself is fine, and small
    monkeypatch.setattr("femtogpt.model.memory.available_bytes", lambda: int(23.1e9))
    with pytest.raises(ModelFileError) as info:
        from_model_file(mf)
    assert re.fullmatch(rf"{re.escape(str(path))}: this model needs \d+\.\d GB; this machine has 23\.1 GB available",
                        str(info.value)), str(info.value)


# ------------------------------------------------------------------------ types and ranges

@pytest.mark.parametrize("kind, field, value, expected", [
    ("TrainStep", "loss", "x", "has loss 'x', expected a number (finite or NaN)"),
    ("TrainStep", "loss", None, "has loss None"),
    ("TrainStep", "loss", math.inf, "has loss inf"),
    ("TrainStep", "loss", "<del>", "has no loss"),
    ("TrainStep", "step", True, "has step True, expected an integer >= 0"),
    ("TrainStep", "step", -1, "has step -1"),
    ("TrainStep", "elapsed_ms", None, "has elapsed_ms None, expected an integer >= 0"),
    ("TrainStep", "lr", "0.1", "has lr '0.1', expected a number >= 0.0"),
    ("Eval", "val_loss", "1.5", "has val_loss '1.5'"),
    ("InsertLayer", "index", 1.5, "has index 1.5, expected an integer >= 0"),
    ("InsertLayer", "index", "<del>", "has no index"),
    ("InsertLayer", "init", 3, "has init 3, expected a string"),
    ("TrainSession", "batch_size", 0, "has batch_size 0, expected an integer >= 1"),
    ("TrainSession", "dataset", ["x"], "has dataset ['x'], expected a string"),
    ("TrainSession", "dropout", 7.0, "has dropout 7.0, expected a number in [0.0, 1.0]"),
    ("Init", "seed", "x", "has seed 'x'"),
    ("Init", "hyperparameters", [1], "has hyperparameters [1], expected a map"),
    ("InitWith", "fresh", [1], "has fresh [1], expected a list of strings"),
    ("InitWith", "parent", 5, "has parent 5, expected a string or None"),
])
def test_log_fields_of_the_wrong_type_are_refused(base, tmp_path, kind, field, value, expected):
    def change(e):
        log = next(log for log in e["logs"] if log["kind"] == kind)
        if value == "<del>":
            del log[field]
        else:
            log[field] = value
    message = load_error(crafted(tmp_path / "log.dat", base, change))
    assert f"({kind}) {expected}" in message, message


@pytest.mark.parametrize("change, expected", [
    (lambda e: e["tokenizer_meta"].update(case_insensitive="no"),
     "tokenizer_meta.case_insensitive is 'no', expected true or false"),
    (lambda e: e["tokenizer_meta"].update(case_insensitive=0), "tokenizer_meta.case_insensitive is 0"),
    (lambda e: e["tokenizer_meta"].update(kind="sentencepiece"), "tokenizer_meta.kind is 'sentencepiece'"),
    (lambda e: e["tokenizer_meta"].update(reserve_tokens=True), "tokenizer_meta.reserve_tokens is True"),
    (lambda e: e.update(tokenizer_meta=[1, 2]), "tokenizer_meta is [1, 2], expected a map"),
    (lambda e: e["train_state"].update(seed="7"), "train_state.seed is '7', expected an integer in 0..2**64-1"),
    (lambda e: e["train_state"].update(seed=-1), "train_state.seed is -1"),
    (lambda e: e["train_state"].update(seed=True), "train_state.seed is True"),
    (lambda e: e["train_state"].update(seed=1.0), "train_state.seed is 1.0"),
    (set_hp(num_layers=True), "hyperparameter num_layers is True, expected an integer"),
])
def test_settings_of_the_wrong_type_are_refused_and_bool_is_not_an_int(base, tmp_path, change, expected):
    message = load_error(crafted(tmp_path / "s.dat", base, change))
    assert expected in message, message


def test_unknown_log_kinds_and_fields_are_kept(base, tmp_path):
    path = crafted(tmp_path / "new.dat", base, lambda e: e["logs"][1].update(from_the_future=[1, {"a": b"\0\1"}]))
    mf = load_model_file(path)
    assert mf.logs[-1]["kind"] == "FromTheFuture" and mf.logs[1]["from_the_future"] == [1, {"a": b"\0\1"}]
    summary = json.loads(run("info", "--model", path, "--json").output)   # bytes are no JSON: shown as a note
    assert summary["history"][1]["from_the_future"] == [1, {"a": "<2 bytes>"}]


def test_values_nested_too_deeply_are_refused(base, tmp_path):
    deep = []
    for _ in range(200):
        deep = [deep]
    message = load_error(crafted(tmp_path / "deep.dat", base, lambda e: e["logs"].append(
        {"id": "x", "kind": "X", "deep": deep})))
    assert message.endswith("logs is nested too deeply (more than 32 levels)")


def test_tokenizer_size_must_equal_vocab_size(base, tmp_path):
    def one_token_more(e):
        spec = json.loads(e["tokenizer"])
        spec["added_tokens"].append({"id": 101, "content": "<|extra|>", "single_word": False, "lstrip": False,
                                     "rstrip": False, "normalized": False, "special": True})
        e["tokenizer"] = json.dumps(spec)
        del e["tokenizer_meta"]["vocab_size"]  # the settings would say it first
    path = crafted(tmp_path / "v.dat", base, one_token_more)
    assert "the stored tokenizer has 102 tokens but the model's vocab_size is 101" in load_error(path)
    for args in (["infer", "--model", path, "hi"], ["compare", path, base], ["export", "--model", path, "--out",
                                                                           tmp_path / "w.npz"]):
        result = run(*args, ok=False)
        assert result.exit_code == 1 and result.output.strip().splitlines() == [
            f"Error: {path}: the stored tokenizer has 102 tokens but the model's vocab_size is 101: they must be "
            "equal"], result.output


# ------------------------------------------------------------------------ printing what a file holds

EVIL = "\x1b[31m\x1b]0;pwned\x07\u202e"


def test_escape_sequences_in_logs_are_printed_escaped(base, tmp_path):
    def change(e):
        insert = next(log for log in e["logs"] if log["kind"] == "InsertLayer")
        insert.update(id="f" * 32, init=EVIL)           # a new id: the histories part here, so compare lists it
        e["logs"].append({"id": EVIL, "kind": "Evil" + EVIL, EVIL: EVIL})
        e["logs"][1]["dataset"] = EVIL
    path = crafted(tmp_path / "evil.dat", base, change)
    escaped = "\\x1b[31m\\x1b]0;pwned\\x07\\u202e"
    lines = summary_lines(model_summary(path))
    assert lines[-1] == f"    Evil{escaped} ({escaped}={escaped})  [\\x1b[31m\\x1b]0]"
    info, compare = run("info", "--model", path).output, run("compare", base, path).output
    for out in (info, compare, run("compare", path, base, "--json").output, run("info", "--model", path,
                                                                                  "--json").output):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, out
    assert f"dataset={escaped}" in info
    assert f"also went through: insert-layer at 1 ({escaped}), reset-optimizer, init-with (a new vocabulary " \
           f"of 101 tokens), FromTheFuture, Evil{escaped}." in compare, compare


def test_tokens_from_a_file_are_printed_escaped(tmp_path):
    tok = tmp_path / "tok.json"
    tok.write_text(json.dumps(["\x1b[2J", "\u202e", "a"]))
    (tmp_path / "d.txt").write_text("a\x1b[2Ja")
    out = run("count-tokens", "--model", tok, "--dataset", tmp_path / "d.txt").output
    assert "\x1b" not in out and "\u202e" not in out and '"\\u001b[2J"' in out and '"\\u202e"' in out, out


# ------------------------------------------------------------------------ the Rust side

def test_a_panicking_tokenizer_regex_is_one_line(base, tmp_path, monkeypatch):
    path = crafted(tmp_path / "panic.dat", base, with_regex(CATASTROPHIC_REGEX))
    tok = load(path).tokenizer
    with pytest.raises(TokenizerError, match=r"^the tokenizer cannot encode the text: the tokenizers library "
                                             r"panicked \(Onig: Regex search error: retry-limit-in-match over\)$"):
        tok.encode("a" * 5000)
    (tmp_path / "a.txt").write_text("a" * 5000)
    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    # a real process: the panic report goes straight to file descriptor 2, past Python's sys.stderr
    for args in (["count-tokens", "--model", path, "--dataset", "a.txt"],
                 ["eval", "--model", path, "--dataset", "a.txt"],
                 ["infer", "--model", path, "--count", "1", "a" * 5000]):
        result = run_limited(args, cwd=tmp_path)
        assert result.returncode == 1 and result.stdout == "", result
        assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith("Error: "), \
            result.stderr
        assert "panicked (Onig: Regex search error" in result.stderr and "backtrace" not in result.stderr


def test_a_deeply_nested_tokenizer_json_is_one_line(base, tmp_path):
    from femtogpt.text.tokenizer_files import load_tokenizer_file

    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TokenizerError, match="deep.json: not a tokenizer JSON \\(nested too deeply\\)"):
        load_tokenizer_file(tmp_path / "deep.json")
    path = crafted(tmp_path / "deep.dat", base, lambda e: e.update(tokenizer="[" * 100_000 + "]" * 100_000))
    assert load_error(path).endswith("tokenizer is not valid JSON (nested too deeply)")


def test_a_bad_regex_in_a_stored_tokenizer_is_one_line(base, tmp_path):
    message = load_error(crafted(tmp_path / "re.dat", base, with_regex("(")))
    assert "the stored tokenizer JSON cannot be read: the tokenizers library failed (" in message, message


# ------------------------------------------------------------------------ the token cache

def test_a_flipped_token_cache_id_is_detected(tmp_path, monkeypatch):
    from femtogpt.text.build import build_tokenizer
    from femtogpt.text.token_cache import encode_file_cached

    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "d.txt").write_text("hello world\n" * 100)
    tok = build_tokenizer("ascii")
    good = encode_file_cached(tok, tmp_path / "d.txt")
    (entry,) = (tmp_path / "cache").iterdir()
    encoded = []
    real = TextTokenizer.encode_large
    monkeypatch.setattr(TextTokenizer, "encode_large", lambda *a, **k: encoded.append(1) or real(*a, **k))
    with np.load(entry) as z:
        ids, crc = z["ids"].copy(), z["crc32"]
    for flip in (lambda a: a.__setitem__(7, a[7] ^ 1), lambda a: a.__setitem__(7, 5000)):  # in and out of range
        bad = ids.copy()
        flip(bad)
        np.savez(entry.with_suffix(""), ids=bad, crc32=crc)   # writes entry: the CRC no longer matches
        assert np.array_equal(encode_file_cached(tok, tmp_path / "d.txt"), good)
    data = bytearray(entry.read_bytes())                         # a flipped bit in the file itself
    data[len(data) // 3] ^= 0x10
    entry.write_bytes(bytes(data))
    assert np.array_equal(encode_file_cached(tok, tmp_path / "d.txt"), good)
    assert len(encoded) == 3                                     # each damaged entry was re-encoded
    assert np.array_equal(encode_file_cached(tok, tmp_path / "d.txt"), good) and len(encoded) == 3


# ------------------------------------------------------------------------ the Rust fork's files

def _fork_file(tmp_path, **hp):
    from femtogpt.io.fork_reader import read_fork_model
    from tests.fixture_paths import FORK_FIXTURES
    from tests.test_fork_import import encode

    fork = read_fork_model(FORK_FIXTURES / "tiny_inserted.dat")
    fork = dataclasses.replace(fork, hyperparameters={**fork.hyperparameters, **hp})
    path = tmp_path / "fork.dat"
    path.write_bytes(encode(fork))
    return path


@pytest.mark.parametrize("hp, expected", [
    ({"num_layers": 10**7}, "num_layers 10000000 and num_heads 2 call for"),
    ({"num_layers": 2**40}, "call for 17,592,186,044,421 tensors"),
    ({"embedding_degree": 2**30, "num_heads": 2**30, "head_size": 1}, "num_heads 1073741824 call for"),
    ({"vocab_size": 2**27}, "tensor token_embedding has shape [101, 32], expected [134217728, 32]"),
    ({"vocab_size": 100}, "tensor token_embedding has shape [101, 32], expected [100, 32]"),
    ({"num_tokens": 2**40}, "this model needs"),
    ({"head_size": 3}, "tensor head_0_0_k has shape [32, 16], expected [32, 3]"),  # head_size is free (H*hs != E)
    ({"head_size": 0}, "head_size must be a positive integer, got 0"),
])
def test_fork_hyperparameters_are_bounded_by_the_file_before_allocating(tmp_path, hp, expected):
    from femtogpt.io.fork_convert import checkpoint_from_fork
    from femtogpt.io.fork_reader import ForkFileError

    path = _fork_file(tmp_path, **hp)
    tracemalloc.start()
    with pytest.raises(ForkFileError) as info:
        checkpoint_from_fork(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value), str(info.value)
    assert peak < 50e6, peak
    for args in (["import-fork", path, tmp_path / "out.dat"], ["compare", path, path]):
        result = run(*args, ok=False)
        assert result.exit_code == 1 and result.output.strip().splitlines() == [f"Error: {info.value}"]


# ------------------------------------------------------------------------ count-tokens reads through the loader

@pytest.mark.parametrize("damage, expected", [
    (lambda p: crafted(p, p, lambda e: e.update(tokenizer_meta=[1, 2])), "tokenizer_meta is [1, 2], expected a map"),
    (lambda p: crafted(p, p, lambda e: e.update(version=7)), "version 7 is newer than this femtogpt reads (1)"),
    (lambda p: p.write_bytes(bytes(b ^ (i == 4000) for i, b in enumerate(p.read_bytes()))),
     "truncated or corrupt (checksum mismatch)"),
    (lambda p: crafted(p, p, set_hp(num_layers=10**7)), "call for 160,000,005 tensors"),
])
def test_count_tokens_reads_model_files_through_the_validated_loader(base, tmp_path, damage, expected):
    (tmp_path / "d.txt").write_text("abc")
    damage(base)
    result = run("count-tokens", "--model", base, "--dataset", tmp_path / "d.txt", ok=False)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"Error: --model {base}: "), lines
    assert expected in lines[0], lines[0]


def test_entries_helper_round_trips(base, tmp_path):
    # the crafted files above differ from a valid one only where a test changed them
    from tests.hostile_files import write_entries

    path = write_entries(tmp_path / "same.dat", entries(base))
    assert Path(path).read_bytes() == base.read_bytes()
