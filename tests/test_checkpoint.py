"""The msgpack model file: exact round trips, the byte layout other tools rely on, and every way a file or a
save can go wrong (truncation, bit flips, foreign files, schema defects, NaN weights, failing writes, kill -9)
ending in one ModelFileError line that names the file, with the old file still loading."""
import errno
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest

from femtogpt.io import logs as L
from femtogpt.io import model_file as ck
from femtogpt.io.model_file import ModelFile, ModelFileError, load_model_file, save_model_file
from femtogpt.config import Hyperparameters
from femtogpt.engine.params import Parameters
from tests.fixture_paths import FORK_FIXTURES

HP = Hyperparameters(vocab_size=7, num_tokens=4, embedding_degree=8, num_layers=1, num_heads=2)
TOKENIZER = ('{"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, '
             '"f": 5, "g": 6}, "unk_token": "a"}}')  # 7 tokens: HP's vocab_size
REPO = Path(__file__).resolve().parents[1]


def make_mf(seed=0, optimizer=True, hp=HP):
    params = Parameters(hp).init_reference(seed)
    rng = np.random.default_rng(seed)
    opt = None
    if optimizer:
        opt = {"step": 12, "m": {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.named().items()},
               "v": {k: rng.random(v.shape).astype(np.float32) for k, v in params.named().items()}}
    logs = [L.new_log(L.INIT, hyperparameters=hp.to_dict()),
            L.new_log(L.TRAIN_SESSION, dropout=0.0, file="data/shakespeare.txt", file_hash="ab" * 10),
            L.new_log(L.TRAIN_STEP, step=0, loss=np.float32(2.5), elapsed_ms=17, lr=0.0),
            L.new_log(L.TRAIN_STEP, step=1, loss=2.25, elapsed_ms=18, lr=1e-5)]
    return ModelFile(hp=hp, tokenizer=TOKENIZER, tensors=params.named(), optimizer=opt, logs=logs,
                     tokenizer_meta={"kind": "bpe", "lowercase": False},
                     train_state={"seed": seed, "data_cursor": 1234, "dataset_hash": "ff" * 16})


def assert_same(a: ModelFile, b: ModelFile):
    assert a.hp == b.hp and a.tokenizer == b.tokenizer and a.tokenizer_meta == b.tokenizer_meta
    assert a.logs == b.logs and a.train_state == b.train_state
    assert sorted(a.tensors) == sorted(b.tensors)  # a file lists them in reference order; a fork in its own
    for name in a.tensors:
        assert np.asarray(a.tensors[name]).tobytes() == np.asarray(b.tensors[name]).tobytes(), name
    assert (a.optimizer is None) == (b.optimizer is None)
    if a.optimizer is not None:
        assert a.optimizer["step"] == b.optimizer["step"]
        for part in "mv":
            for name in a.tensors:
                assert a.optimizer[part][name].tobytes() == b.optimizer[part][name].tobytes()


def load_error(path) -> str:
    with pytest.raises(ModelFileError) as info:
        load_model_file(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{path}: "), message
    return message


def write_raw(path, entries: dict):
    """Write a map as our writer does (checksum last, over every byte before it), from hand-made entries."""
    body = msgpack.packb(entries)
    assert len(entries) < 15 and body[0] == 0x80 | len(entries)
    body = bytes([0x80 | (len(entries) + 1)]) + body[1:]
    Path(path).write_bytes(body + msgpack.packb("checksum") + msgpack.packb(f"{zlib.crc32(body):08x}"))


def raw_entries(path) -> dict:
    entries = msgpack.unpackb(Path(path).read_bytes())
    del entries["checksum"]
    return entries


def leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir())


@pytest.fixture
def saved(tmp_path):
    mf = make_mf()
    path = tmp_path / "model.dat"
    save_model_file(path, mf)
    return path, mf


# ---------------------------------------------------------------- round trips and layout

def test_round_trip_is_exact(saved):
    path, mf = saved
    loaded = load_model_file(path)
    assert_same(mf, loaded)
    for a in list(loaded.tensors.values()) + list(loaded.optimizer["m"].values()):
        assert a.dtype == np.float32 and a.flags.writeable and a.flags.c_contiguous
    loaded.tensors["proj_0_weights"][0, 0] = 1.0  # writable copies, not views of the file's bytes
    assert isinstance(loaded.logs[2]["loss"], float) and loaded.logs[2]["kind"] == "TrainStep"


def test_round_trip_without_optimizer_and_with_defaults(tmp_path):
    mf = ModelFile(hp=HP, tokenizer=TOKENIZER, tensors=Parameters(HP).init_reference(3).named())
    save_model_file(tmp_path / "m.dat", mf)
    assert "optimizer" not in raw_entries(tmp_path / "m.dat")
    loaded = load_model_file(tmp_path / "m.dat")
    assert_same(mf, loaded)
    assert loaded.optimizer is None and loaded.logs == [] and loaded.train_state == {}


def test_layout_is_what_the_readme_documents(saved):
    path, mf = saved
    data = path.read_bytes()
    assert data[1:17] == b"\xa6format\xa8femtogpt"
    assert data[-18:-8] == b"\xa8checksum\xa8" and data[-8:] == f"{zlib.crc32(data[:-18]):08x}".encode()
    top = msgpack.unpackb(data)
    assert list(top) == ["format", "version", "hyperparameters", "tokenizer", "tokenizer_meta", "logs",
                         "train_state", "tensors", "optimizer", "checksum"]
    assert top["version"] == 1 and top["hyperparameters"] == HP.to_dict() and top["tokenizer"] == TOKENIZER
    assert list(top["tensors"]) == list(ck.tensor_shapes(HP))
    entry = top["tensors"]["head_0_1_q"]  # a column view of the fused qkv internally
    want = np.ascontiguousarray(mf.tensors["head_0_1_q"])
    assert entry == {"dtype": "float32", "shape": [8, 4], "data": want.astype("<f4").tobytes()}
    assert set(top["optimizer"]) == {"step", "m", "v"} and top["optimizer"]["step"] == 12
    assert re.fullmatch(r"[0-9a-f]{32}", top["logs"][0]["id"])


def test_loader_accepts_the_little_endian_dtype_spelling(saved, tmp_path):
    path, mf = saved
    entries = raw_entries(path)
    for entry in entries["tensors"].values():
        entry["dtype"] = "<f4"
    write_raw(tmp_path / "le.dat", entries)
    assert_same(mf, load_model_file(tmp_path / "le.dat"))


def test_tensor_shapes_match_parameters():
    for hp in (HP, Hyperparameters(vocab_size=5, num_tokens=3, embedding_degree=12, num_layers=2, num_heads=3)):
        params = Parameters(hp).init_reference(0)
        assert {k: v.shape for k, v in params.named().items()} == ck.tensor_shapes(hp)


def test_new_log_ids_are_fresh_32_hex_and_fields_plain():
    ids = {L.new_log(L.EVAL)["id"] for _ in range(1000)}
    assert len(ids) == 1000 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    log = L.new_log(L.TRAIN_STEP, step=np.int64(5), loss=np.float32(1.5), elapsed_ms=12, lr=np.float64(1e-3))
    assert log["kind"] == "TrainStep" and set(log) == {"id", "kind", "step", "loss", "elapsed_ms", "lr"}
    assert [type(log[k]) for k in ("step", "loss", "elapsed_ms", "lr")] == [int, float, int, float]
    assert type(L.new_log(L.INSERT_LAYER, index=np.int64(2))["index"]) is int
    with pytest.raises(ValueError):
        L.new_log(L.INIT, id="x")


def test_peek_header_reads_the_small_entries(saved):
    path, mf = saved
    head = ck.peek_header(path)
    assert head["hyperparameters"] == HP and head["logs"] == mf.logs and head["version"] == 1
    assert head["tokenizer"] == TOKENIZER and head["train_state"] == mf.train_state


FORK = FORK_FIXTURES / "tiny_inserted.dat"


def test_fork_model_logs_and_tensors_fit_the_file(tmp_path):
    from femtogpt.io.fork_convert import convert_logs
    from femtogpt.io.fork_reader import read_fork_model
    from femtogpt.text.tokenizer_files import from_fork_tokens
    fork = read_fork_model(FORK)
    h = fork.hyperparameters
    hp = Hyperparameters(vocab_size=h["vocab_size"], num_tokens=h["num_tokens"], embedding_degree=h["embedding_degree"],
                         num_layers=h["num_layers"], num_heads=h["num_heads"], pos_enc=fork.pos_enc)
    tok = from_fork_tokens(fork.tokens, fork.unk_id, fork.case_sensitive)
    mf = ModelFile(hp=hp, tokenizer=tok.to_json(), tokenizer_meta=tok.meta(), tensors=fork.tensors,
                   logs=convert_logs(fork.logs))
    save_model_file(tmp_path / "f.dat", mf)
    assert_same(mf, load_model_file(tmp_path / "f.dat"))


# ---------------------------------------------------------------- damaged and foreign files

def test_truncated_at_any_offset(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    offsets = {0, 1, 2, 10, 17, 100, len(data) // 2, len(data) - 18, len(data) - 9, len(data) - 1}
    offsets |= set(range(0, len(data), max(1, len(data) // 150)))
    cut = tmp_path / "cut.dat"
    for n in sorted(offsets):
        cut.write_bytes(data[:n])
        message = load_error(cut)
        assert ("empty file" if n == 0 else "truncated or corrupt") in message, (n, message)
        try:  # unverified by design, but never a traceback
            ck.peek_header(cut)
        except ModelFileError as e:
            assert "\n" not in str(e)


def test_every_single_bit_flip_is_detected(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    rng = random.Random(0)
    bits = [rng.randrange(len(data) * 8) for _ in range(200)]
    bits += list(range(0, 20 * 8)) + list(range((len(data) - 18) * 8, len(data) * 8))  # header bytes, trailer
    flipped = tmp_path / "flip.dat"
    for bit in bits:
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        flipped.write_bytes(damaged)
        assert "truncated or corrupt" in load_error(flipped), bit


@pytest.mark.parametrize("content, expected", [
    (b"hello world\n", "not a femtogpt model file"),
    (b'{"format": "femtogpt", "version": 1}', "not a femtogpt model file"),
    (bytes(range(256)) * 4, "not a femtogpt model file"),
    (msgpack.packb([1, 2, 3]), "not a femtogpt model file"),
    (msgpack.packb({"format": "safetensors", "tensors": {}}), "not a femtogpt model file (format 'safetensors')"),
    (msgpack.packb({"format": "femtogpt", "version": 1}), "no checksum"),
    (b"\x00" * 64, "not a femtogpt model file"),
    (b"", "empty file (0 bytes)"),
])
def test_foreign_files(tmp_path, content, expected):
    path = tmp_path / "x.dat"
    path.write_bytes(content)
    assert expected in load_error(path)
    with pytest.raises(ModelFileError):
        ck.peek_header(path)


def test_missing_file_and_directory(tmp_path):
    assert load_error(tmp_path / "nope.dat").endswith("nope.dat: no such file")
    assert "is a directory" in load_error(tmp_path)
    with pytest.raises(ModelFileError, match="no such file"):
        ck.peek_header(tmp_path / "nope.dat")


def test_unreadable_file(saved, monkeypatch):
    path, _ = saved

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(ck, "open", denied, raising=False)  # chmod 000 does not stop root
    assert load_error(path).endswith("cannot read: permission denied")


def _set(path, *keys):
    def mutate(entries):
        target = entries
        for k in path[:-1]:
            target = target[k]
        if keys == ("<del>",):
            del target[path[-1]]
        else:
            target[path[-1]] = keys[0]
    return mutate


def _tensor(shape, fill=0.0, dtype="float32", nbytes=None):
    data = np.full(shape, fill, "<f4").tobytes()
    return {"dtype": dtype, "shape": list(shape), "data": data if nbytes is None else data[:nbytes]}


@pytest.mark.parametrize("mutate, expected", [
    (_set(["version"], 7), "version 7 is newer than this femtogpt reads (1); upgrade femtogpt"),
    (_set(["version"], "1"), "bad version '1'"),
    (_set(["version"], 0), "bad version 0"),
    (_set(["format"], "femtoGPT"), "not a femtogpt model file (format 'femtoGPT')"),
    (_set(["tensors", "proj_0_weights"], _tensor((3, 4))), "tensor proj_0_weights has shape [3, 4], expected [8, 8]"),
    (_set(["tensors", "head_0_1_v"], "<del>"), "tensors do not match the hyperparameters: missing head_0_1_v"),
    (_set(["tensors", "head_0_2_v"], _tensor((8, 4))), "unexpected head_0_2_v"),
    (_set(["tensors", "proj_0_bias"], _tensor((8,), nbytes=31)), "tensor proj_0_bias has 31 bytes of data, expected 32"),
    (_set(["tensors", "proj_0_bias"], _tensor((8,), dtype="float64")), "proj_0_bias has dtype 'float64', expected float32"),
    (_set(["tensors", "proj_0_bias"], _tensor((8,), float("nan"))), "tensor proj_0_bias contains NaN or infinite"),
    (_set(["tensors", "proj_0_bias", "shape"], [8.0]), "proj_0_bias has a bad shape [8.0]"),
    (_set(["optimizer", "v", "proj_0_bias"], _tensor((8,), -1.0)), "optimizer v tensor proj_0_bias has negative values"),
    (_set(["optimizer", "m", "proj_0_bias"], _tensor((9,))), "optimizer m tensor proj_0_bias has shape [9], expected [8]"),
    (_set(["optimizer", "step"], -1), "optimizer step is -1, expected an integer >= 0"),
    (_set(["optimizer", "extra"], 1), "optimizer is not a {step, m, v} map"),
    (_set(["hyperparameters", "head_size"], 3), "tensor head_0_0_k has shape [8, 4], expected [8, 3]"),
    (_set(["hyperparameters", "pos_enc"], "alibi"),
     "bad hyperparameters: pos_enc must be one of none, absolute, learned, rotary"),
    (_set(["hyperparameters", "vocab_size"], 0), "bad hyperparameters: vocab_size must be a positive integer"),
    (_set(["hyperparameters", "num_heads"], True), "hyperparameter num_heads is True, expected an integer"),
    (_set(["hyperparameters", "num_heads"], 3), "tensors do not match the hyperparameters: missing head_0_2_k"),
    (_set(["hyperparameters", "head_size"], 0), "bad hyperparameters: head_size must be a positive integer"),
    (_set(["hyperparameters", "num_layers"], 2), "tensors do not match the hyperparameters: missing norm_1_coeff"),
    (_set(["hyperparameters", "dropout"], 0.1), "hyperparameters: unknown dropout"),
    (_set(["hyperparameters", "num_tokens"], "<del>"), "hyperparameters: missing num_tokens"),
    (_set(["tokenizer"], b"{}"), "tokenizer is b'{}', expected the tokenizer's JSON text"),
    (_set(["tokenizer"], "{not json"), "tokenizer is not valid JSON"),
    (_set(["logs", 1, "id"], "<del>"), "log 1 (TrainSession) has no id"),
    (_set(["logs"], {"a": 1}), "logs is {'a': 1}, expected a list"),
    (_set(["train_state"], [1]), "train_state is [1], expected a map"),
    (_set(["weights"], {}), "unknown top-level key(s) weights"),
    (_set(["tensors"], "<del>"), "missing tensors"),
])
def test_schema_defects_are_one_clear_line(saved, tmp_path, mutate, expected):
    path, _ = saved
    entries = raw_entries(path)
    mutate(entries)
    bad = tmp_path / "m.dat"
    write_raw(bad, entries)
    message = load_error(bad)
    assert expected in message, message


def test_edited_version_without_a_new_checksum_says_both(saved, tmp_path):
    path, _ = saved
    entries = msgpack.unpackb(path.read_bytes())
    entries["version"] = 99  # repacked with the old checksum
    (tmp_path / "future.dat").write_bytes(msgpack.packb(entries))
    assert load_error(tmp_path / "future.dat").endswith(
        "truncated or corrupt (checksum mismatch); it also claims version 99, newer than this femtogpt reads (1)")


def test_duplicate_log_ids_and_map_keys(saved, tmp_path):
    path, _ = saved
    entries = raw_entries(path)
    entries["logs"][3]["id"] = entries["logs"][0]["id"]
    write_raw(tmp_path / "dup.dat", entries)
    assert "log 3 (TrainStep) repeats the id" in load_error(tmp_path / "dup.dat")
    # a map with one key twice cannot come from a dict: splice the bytes by hand
    entries = raw_entries(path)
    body = bytes([0x80 | (len(entries) + 2)]) + msgpack.packb(entries)[1:] + msgpack.packb("format") + msgpack.packb("femtogpt")
    (tmp_path / "twice.dat").write_bytes(body + b"\xa8checksum\xa8" + f"{zlib.crc32(body):08x}".encode())
    assert "the key 'format' appears twice" in load_error(tmp_path / "twice.dat")


# ---------------------------------------------------------------- saving safely

def assert_unchanged(path, mf):
    assert_same(mf, load_model_file(path))
    assert leftovers(path.parent) == [path.name]


def test_atomic_save_leaves_no_temp_file_and_keeps_permissions(saved):
    path, mf = saved
    os.chmod(path, 0o640)
    new = make_mf(seed=1)
    save_model_file(path, new)
    assert leftovers(path.parent) == ["model.dat"] and (path.stat().st_mode & 0o777) == 0o640
    assert_same(new, load_model_file(path))


@pytest.mark.parametrize("where", ["tensors", "optimizer m"])
def test_nan_weights_are_never_saved(saved, where):
    path, mf = saved
    bad = make_mf(seed=5)
    (bad.tensors if where == "tensors" else bad.optimizer["m"])["feedforward1_0_weights"][1, 2] = np.nan
    with pytest.raises(ModelFileError) as info:
        save_model_file(path, bad)
    kind = "tensor" if where == "tensors" else "optimizer m tensor"
    assert str(info.value) == f"{path}: cannot save: {kind} feedforward1_0_weights contains NaN or infinite values"
    assert_unchanged(path, mf)


@pytest.mark.parametrize("change, expected", [
    (lambda mf: mf.tensors.__setitem__("proj_0_bias", np.zeros(8)), "tensor proj_0_bias is a float64 array"),
    (lambda mf: mf.tensors.pop("proj_0_bias"), "tensors do not match the hyperparameters: missing proj_0_bias"),
    (lambda mf: mf.optimizer["v"]["proj_0_bias"].__setitem__(0, -1), "optimizer v tensor proj_0_bias has negative"),
    (lambda mf: mf.logs.append({"id": "x", "kind": "Eval", "loss": np.float32(1)}),
     "logs[4].loss: a float32 cannot be stored"),
    (lambda mf: mf.train_state.__setitem__("rng", 2**100), "rng: the integer 1267650600228229401496703205376 does"),
    (lambda mf: mf.tokenizer_meta.__setitem__(3, "x"), "tokenizer_meta: the key 3 is not a string"),
    (lambda mf: mf.logs.append(dict(mf.logs[0])), "log 4 (Init) repeats the id"),
    (lambda mf: setattr(mf, "tokenizer", None), "tokenizer is None, expected the tokenizer's JSON text"),
])
def test_save_refuses_what_would_not_load(saved, change, expected):
    path, mf = saved
    bad = make_mf(seed=9)
    change(bad)
    with pytest.raises(ModelFileError) as info:
        save_model_file(path, bad)
    assert str(info.value).startswith(f"{path}: cannot save: ") and expected in str(info.value), str(info.value)
    assert_unchanged(path, mf)


@pytest.mark.parametrize("call, code, expected", [
    ("open", errno.EROFS, "read-only file system"),
    ("open", errno.EACCES, "permission denied"),
    ("write", errno.ENOSPC, "no space left on device"),
    ("fsync", errno.ENOSPC, "no space left on device"),
    ("fsync", errno.EDQUOT, "disk quota exceeded"),
    ("replace", errno.EACCES, "permission denied"),
])
def test_failed_write_leaves_the_old_file(saved, monkeypatch, call, code, expected):
    path, mf = saved
    real = {"open": os.open, "fsync": os.fsync, "replace": os.replace}

    def failing(*args, **kwargs):  # only our temp file's calls fail; anything else behaves normally
        if call == "open" and not str(args[0]).endswith(".tmp"):
            return real["open"](*args, **kwargs)
        raise OSError(code, os.strerror(code))
    if call == "write":  # the temp file's writes fail once a few kilobytes are in
        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k), code))
    else:
        monkeypatch.setattr(os, call, failing)
    with pytest.raises(ModelFileError) as info:
        save_model_file(path, make_mf(seed=2))
    monkeypatch.undo()
    message = str(info.value)
    assert message.startswith(f"{path}: cannot save: ") and expected in message, message
    assert message.endswith("the existing model.dat is unchanged") and "\n" not in message
    assert_unchanged(path, mf)


class _FullDisk:
    """A file object whose writes fail with `code` after 4 KB, as a disk that fills up during the save."""

    def __init__(self, f, code):
        self.f, self.code, self.written = f, code, 0

    def write(self, b):
        self.written += len(b)
        if self.written > 4096:
            raise OSError(self.code, os.strerror(self.code))
        return self.f.write(b)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_read_only_directory_for_real(saved):
    path, mf = saved
    os.chmod(path.parent, 0o555)
    try:
        probe = path.parent / "probe"
        try:
            probe.write_bytes(b"")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root: chmod does not stop writes (the monkeypatched tests cover it)")
        with pytest.raises(ModelFileError, match=r"cannot save: permission denied .*; the existing model.dat is unchanged"):
            save_model_file(path, make_mf(seed=2))
    finally:
        os.chmod(path.parent, 0o755)
    assert_unchanged(path, mf)


def test_saving_through_a_symlink_keeps_the_link(saved, tmp_path):
    path, _ = saved
    link = tmp_path / "link.dat"
    link.symlink_to(path.name)
    new = make_mf(seed=6)
    save_model_file(link, new)
    assert link.is_symlink() and leftovers(tmp_path) == ["link.dat", "model.dat"]
    assert_same(new, load_model_file(path))


def test_new_file_into_missing_directory(tmp_path):
    with pytest.raises(ModelFileError, match=r"cannot save: directory '.*nowhere' does not exist; nothing was written"):
        save_model_file(tmp_path / "nowhere" / "m.dat", make_mf())
    with pytest.raises(ModelFileError, match="cannot save: it is a directory"):
        save_model_file(tmp_path, make_mf())


def run_child(code, *args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_file_size_limit_mid_write_is_a_real_os_error(saved):
    # RLIMIT_FSIZE makes the kernel refuse writes past the limit, even for root: a real failing write()
    path, mf = saved
    child = run_child("""
        import resource, signal, sys
        from femtogpt.io.model_file import ModelFileError, save_model_file
        from tests.test_checkpoint import make_mf
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            save_model_file(sys.argv[1], make_mf(seed=4))
        except ModelFileError as e:
            print(e)
            sys.exit(1)
    """, path)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1 and err == "", err
    assert out == f"{path}: cannot save: file too large for this file system or process limit; " \
                  f"the existing model.dat is unchanged\n"
    assert_unchanged(path, mf)


def test_kill_9_during_saves_leaves_a_loadable_file(tmp_path):
    # a ~20 MB model saved over and over; SIGKILL at a random moment must leave the old or the new file
    path = tmp_path / "big.dat"
    code = """
        import json
        import sys
        import numpy as np
        from femtogpt.io.model_file import ModelFile, save_model_file
        from femtogpt.config import Hyperparameters
        hp = Hyperparameters(vocab_size=1000, num_tokens=8, embedding_degree=256, num_layers=6, num_heads=4)
        from femtogpt.io.model_file import tensor_shapes
        rng = np.random.default_rng(0)
        tensors = {n: rng.standard_normal(s, dtype=np.float32) for n, s in tensor_shapes(hp).items()}
        tokenizer = json.dumps({"model": {"type": "WordLevel", "vocab": {str(i): i for i in range(1000)},
                                          "unk_token": "0"}})
        for i in range(10**6):
            tensors["token_embedding"][0, 0] = i
            save_model_file(sys.argv[1], ModelFile(hp=hp, tokenizer=tokenizer, tensors=tensors,
                                                   train_state={"i": i}))
            print(i, flush=True)
    """
    rng = random.Random(1)
    mid_save = 0
    for trial in range(4):
        child = run_child(code, path)
        first = child.stdout.readline()  # one save done: from here on a good file exists
        assert first.strip().isdigit(), child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        child.communicate()
        assert child.returncode == -signal.SIGKILL
        mf = load_model_file(path)
        assert mf.tensors["token_embedding"][0, 0] == mf.train_state["i"]  # one save's content, not a mix
        assert path.stat().st_size > 20_000_000
        temps = [n for n in leftovers(tmp_path) if n != "big.dat"]  # a killed save's temp file stays behind
        assert all(re.fullmatch(r"\.big\.dat\.[0-9a-f]{8}\.tmp", n) for n in temps), temps
        mid_save += bool(temps)
        for n in temps:
            (tmp_path / n).unlink()
    assert mid_save > 0  # at least one kill landed inside a save (about 9 in 10 do)
