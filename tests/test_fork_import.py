"""The fork's own model files read exactly: tensors, tokenizer, optimizer and logs match its `info` output.

The fixtures are real files made by the Rust fork, committed in tests/fixtures/fork (see its README).
Damaged files must fail with one ForkFileError line.
"""
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from femtogpt.io.fork_reader import ForkFileError, ForkModel, parse_fork_model, read_fork_model
from tests.fixture_paths import FORK_FIXTURES as FIXTURES

MODELS = ["tiny_more", "tiny_abs", "tiny_inserted", "tiny_bpe_child"]

_cache: dict = {}


def load(name: str) -> ForkModel:
    if name not in _cache:
        _cache[name] = read_fork_model(FIXTURES / f"{name}.dat")
    return _cache[name]


def info(name: str) -> dict:
    return json.loads((FIXTURES / f"info_{name}.json").read_text())


def expected_shapes(hp: dict) -> dict:
    # reference §2.1; pos_input is never saved
    V, E, L, H, hs = (hp[k] for k in ("vocab_size", "embedding_degree", "num_layers", "num_heads", "head_size"))
    shapes = {"token_embedding": (V, E), "head_norm_coeff": (E,), "head_norm_bias": (E,),
              "head_map_weights": (E, V), "head_map_bias": (V,)}
    for l in range(L):
        for h in range(H):
            for x in "kqv":
                shapes[f"head_{l}_{h}_{x}"] = (E, hs)
        shapes.update({f"norm_{l}_coeff": (E,), f"norm_{l}_bias": (E,),
                       f"proj_{l}_weights": (H * hs, E), f"proj_{l}_bias": (E,),
                       f"atten_norm_{l}_coeff": (E,), f"atten_norm_{l}_bias": (E,),
                       f"feedforward1_{l}_weights": (E, 4 * E), f"feedforward1_{l}_bias": (4 * E,),
                       f"feedforward2_{l}_weights": (4 * E, E), f"feedforward2_{l}_bias": (E,)})
    return shapes


def flat_log(log: dict) -> dict:
    # serde's externally tagged form -> ours: {"kind": {"TrainStep": {...}}, "id"} -> {"kind": "TrainStep", ...}
    kind = log["kind"]
    if isinstance(kind, str):
        return {"id": log["id"], "kind": kind}
    (name, fields), = kind.items()
    return {"id": log["id"], "kind": name, **fields}


def encode(m: ForkModel) -> bytes:
    """A bincode writer for ForkModel, only for tests: a read-then-write round trip must give the same bytes."""
    out = bytearray()
    u32 = lambda v: out.extend(struct.pack("<I", v))
    u64 = lambda v: out.extend(struct.pack("<Q", v))
    raw = lambda b: (u64(len(b)), out.extend(b))

    def tensors(d):
        u64(len(d))
        for name, a in d.items():
            raw(name.encode())
            u64(a.size)
            out.extend(np.ascontiguousarray(a, dtype="<f4").tobytes())
            u64(a.ndim)
            for s in a.shape:
                u64(s)

    u32(["char", "byte"].index(m.tokenizer_unit))
    out.append(int(m.case_sensitive))
    u64(m.unk_id)
    u64(len(m.tokens))
    for tid, b in m.tokens.items():
        u64(tid)
        raw(b)
    u32(["none", "absolute"].index(m.pos_enc))
    for v in m.hyperparameters.values():
        u64(v)
    tensors(m.tensors)
    u64(m.optimizer_step)
    tensors(m.optimizer_state)
    u64(len(m.logs))
    kinds = ["Init", "TrainSession", "TrainStep", "InsertLayer", "ResetOptimizer"]
    for log in m.logs:
        u32(kinds.index(log["kind"]))
        if log["kind"] == "Init":
            for v in log["hyperparameters"].values():
                u64(v)
        elif log["kind"] == "TrainSession":
            out.extend(struct.pack("<f", log["dropout"]))
            raw(log["file"].encode())
            raw(log["file_hash"].encode())
        elif log["kind"] == "TrainStep":
            out.extend(struct.pack("<fQ?", log["avg_loss"], log["elapsed"], log["is_gpu"]))
        elif log["kind"] == "InsertLayer":
            u64(log["index"])
        raw(log["id"].encode())
    return bytes(out)


def small_model() -> ForkModel:
    hp = dict(num_tokens=4, vocab_size=2, embedding_degree=2, num_layers=0, num_heads=1, head_size=2)
    return ForkModel(
        tokenizer_unit="byte", case_sensitive=False, unk_id=1, tokens={0: b"a", 1: b"<unk>"}, pos_enc="absolute",
        hyperparameters=hp, tensors={"token_embedding": np.arange(4, dtype=np.float32).reshape(2, 2)},
        optimizer_step=3, optimizer_state={"token_embedding_m": np.ones((2, 2), np.float32)},
        logs=[{"id": "0" * 32, "kind": "Init", "hyperparameters": hp},
              {"id": "1" * 32, "kind": "TrainSession", "dropout": 0.25, "file": "d.txt", "file_hash": "f" * 20},
              {"id": "2" * 32, "kind": "TrainStep", "avg_loss": 1.5, "elapsed": 7, "is_gpu": True},
              {"id": "3" * 32, "kind": "InsertLayer", "index": 0},
              {"id": "4" * 32, "kind": "ResetOptimizer"}])


def assert_one_line_error(data: bytes, tmp_path: Path, name: str = "bad.dat") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ForkFileError) as e:
        read_fork_model(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


# ----------------------------------------------------------------------------------------------- the fixtures


@pytest.mark.parametrize("name", MODELS)
def test_fixture_tensors_and_hyperparameters(name):
    m, inf = load(name), info(name)
    hp = m.hyperparameters
    assert hp == inf["hyperparameters"]
    V, E, L = hp["vocab_size"], hp["embedding_degree"], hp["num_layers"]
    assert hp["num_heads"] * hp["head_size"] == E
    num_params = 2 * V * E + V + L * (12 * E * E + 10 * E) + 2 * E
    assert num_params == inf["num_params"] == sum(a.size for a in m.tensors.values())
    assert {k: a.shape for k, a in m.tensors.items()} == expected_shapes(hp)  # same names: no pos_input
    for a in m.tensors.values():
        assert a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable and np.isfinite(a).all()
    assert m.pos_enc == ("absolute" if name == "tiny_abs" else "none")


@pytest.mark.parametrize("name", MODELS)
def test_fixture_round_trip_is_lossless(name):
    # writing back what we read gives the file byte for byte: every field was read, in order
    assert encode(load(name)) == (FIXTURES / f"{name}.dat").read_bytes()


@pytest.mark.parametrize("name", MODELS)
def test_fixture_logs_match_info(name):
    ours, theirs = load(name).logs, [flat_log(l) for l in info(name)["logs"]]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys() and len(a["id"]) == 32, (a, b)
        for k in a:
            if isinstance(a[k], float):
                assert np.float32(a[k]) == np.float32(b[k]), (k, a, b)
            else:
                assert a[k] == b[k], (k, a, b)
    assert ours[0]["kind"] == "Init"


@pytest.mark.parametrize("name", ["tiny_more", "tiny_abs"])
def test_fixture_loss_file_is_last_train_steps(name):
    expected = np.array((FIXTURES / f"loss_{name}.txt").read_text().split(), dtype=np.float32)
    steps = [l["avg_loss"] for l in load(name).logs if l["kind"] == "TrainStep"]
    assert np.array_equal(np.array(steps[-100:], dtype=np.float32), expected)


@pytest.mark.parametrize("name", MODELS)
def test_fixture_tokenizer_matches_info(name):
    m, inf = load(name), info(name)
    V = m.hyperparameters["vocab_size"]
    assert len(m.tokens) == V == len(inf["tokens"]) and sorted(m.tokens) == list(range(V))  # dense after compact
    assert m.tokens[m.unk_id] == b"<unk>"
    assert m.tokenizer_unit == "char" and m.case_sensitive is True
    for t in inf["tokens"]:
        assert m.tokens[t["index"]].decode("utf-8", "replace") == t["string"], t  # info prints a lossy decode


def test_fixture_optimizer_state():
    m = load("tiny_more")
    assert m.optimizer_step == 312
    assert m.optimizer_state.keys() == {f"{k}_{s}" for k in m.tensors for s in "mv"}
    for k, a in m.tensors.items():
        assert m.optimizer_state[f"{k}_m"].shape == m.optimizer_state[f"{k}_v"].shape == a.shape
        assert (m.optimizer_state[f"{k}_v"] >= 0).all()       # second moments
    inserted = load("tiny_inserted")
    assert inserted.optimizer_step == 0 and inserted.optimizer_state == {}
    assert [l["kind"] for l in inserted.logs[-2:]] == ["InsertLayer", "ResetOptimizer"]
    assert inserted.logs[-2]["index"] == 1


# ----------------------------------------------------------------------------------------------- bad input


def test_truncated_fixture_always_fails_cleanly(tmp_path):
    data = (FIXTURES / "tiny_inserted.dat").read_bytes()           # holds every log kind but Init's neighbours
    for n in (0, 1, 10, len(data) // 2, len(data) - 1):
        msg = assert_one_line_error(data[:n], tmp_path, f"cut_{n}.dat")
        assert ("empty" if n == 0 else "truncated") in msg, msg
    for n in list(range(0, 400)) + list(range(400, len(data), 997)):  # every header offset, then a sweep
        with pytest.raises(ForkFileError):
            parse_fork_model(data[:n], "cut")


def test_flipped_enum_variants_and_bools_fail(tmp_path):
    data = (FIXTURES / "tiny_more.dat").read_bytes()
    m = load("tiny_more")
    pos_enc_at = 4 + 1 + 8 + 8 + sum(16 + len(b) for b in m.tokens.values())
    last_log_at = len(data) - (4 + 4 + 8 + 1 + 8 + 32)                 # a TrainStep log is 57 bytes
    assert data[pos_enc_at:pos_enc_at + 4] == b"\0\0\0\0" and data[last_log_at] == 2
    cases = {0: (7, "not a fork model file"), 4: (2, "invalid bool"),
             pos_enc_at: (9, "unknown PosEnc variant 9"), last_log_at: (5, "unknown LogKind"),
             len(data) - 41: (2, "invalid bool")}                        # the last TrainStep's is_gpu
    for at, (value, expected) in cases.items():
        bad = bytearray(data)
        bad[at] = value
        msg = assert_one_line_error(bytes(bad), tmp_path)
        assert expected in msg and f"at byte {at} " in msg, msg


def test_trailing_garbage_fails(tmp_path):
    data = (FIXTURES / "tiny_bpe_child.dat").read_bytes()
    msg = assert_one_line_error(data + b"\0", tmp_path)
    assert "1 trailing bytes" in msg and f"at byte {len(data)} " in msg


def test_random_bytes_empty_and_missing_files_fail(tmp_path):
    rng = np.random.default_rng(0)
    assert "empty file" in assert_one_line_error(b"", tmp_path)
    assert "not a fork model file" in assert_one_line_error(rng.bytes(1000), tmp_path)
    good = encode(small_model())
    for seed in range(50):                                    # a valid start, then noise: never a raw exception
        r = np.random.default_rng(seed)
        cut = int(r.integers(0, len(good)))
        with pytest.raises(ForkFileError):
            parse_fork_model(good[:cut] + r.bytes(int(r.integers(1, 200))), "noise")
    with pytest.raises(ForkFileError, match="cannot read"):
        read_fork_model(tmp_path / "missing.dat")


def test_small_model_round_trip():
    m = small_model()
    back = parse_fork_model(encode(m))
    assert back.tokens == m.tokens and back.logs == m.logs and back.hyperparameters == m.hyperparameters
    assert (back.tokenizer_unit, back.case_sensitive, back.unk_id, back.pos_enc, back.optimizer_step) == (
        "byte", False, 1, "absolute", 3)
    assert np.array_equal(back.tensors["token_embedding"], m.tensors["token_embedding"])
    back.tensors["token_embedding"][0, 0] = 9.0                # writable, not a view of the bytes


def test_shape_blob_mismatch_bad_utf8_and_duplicates_fail(tmp_path):
    m = small_model()
    m.tensors["token_embedding"] = np.zeros((2, 2), np.float32)
    good = encode(m)
    shape = struct.pack("<QQQ", 2, 2, 2)
    at = good.index(shape)
    assert "has shape [2, 3] but 4 values" in assert_one_line_error(
        good[:at] + struct.pack("<QQQ", 2, 2, 3) + good[at + 24:], tmp_path)
    name = good.index(b"token_embedding")
    msg = assert_one_line_error(good[:name] + b"\xff" + good[name + 1:], tmp_path)
    assert "not valid UTF-8" in msg
    m.tokens = {0: b"a", 1: b"<unk>"}
    dup = encode(m).replace(struct.pack("<QQ", 1, 5) + b"<unk>", struct.pack("<QQ", 0, 5) + b"<unk>")
    assert "duplicate token id 0" in assert_one_line_error(dup, tmp_path)
    m.tensors = {"s": np.array(2.0, np.float32)}                # a 0-d tensor holds one value
    assert parse_fork_model(encode(m)).tensors["s"].shape == ()
