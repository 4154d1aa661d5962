"""`export`: safetensors (read back by hand, and by the safetensors library) and .npz."""
import json
import struct

import numpy as np
import pytest

from femtogpt.io.checkpoint import load
from femtogpt.text.tokenizer import TextTokenizer
from tests.run_cli import run


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("init", "--num-tokens", 8, "--embedding-degree", 8, "--num-layers", 2, "--num-heads", 2,
        "--seed", 3)
    (tmp_path / "d.txt").write_text("abcabc;" * 50)
    run("train", "--dataset", "d.txt", "--steps", 3, "--batch-size", 2)
    return tmp_path / "model.dat"


def read_safetensors(path):
    """(metadata, {name: array}) by the format's definition, checking its layout rules."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0  # the header is padded so the tensor bytes start aligned
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    metadata = header.pop("__metadata__")
    spans = sorted(entry["data_offsets"] for entry in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(body)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # back to back, no holes
    tensors = {}
    for name, entry in header.items():
        assert entry["dtype"] == "F32"
        lo, hi = entry["data_offsets"]
        tensors[name] = np.frombuffer(body[lo:hi], "<f4").reshape(entry["shape"])
    return metadata, tensors


def test_safetensors_holds_every_tensor_by_reference_name_and_the_metadata(model):
    out = run("export", "--out", "w.safetensors").output
    assert "to w.safetensors: safetensors" in out
    session = load(model)
    metadata, tensors = read_safetensors(model.parent / "w.safetensors")
    named = session.model.params.named()
    assert set(tensors) == set(named)  # head_{l}_{h}_q/k/v per head, as in the model file
    for name, view in named.items():
        np.testing.assert_array_equal(tensors[name], view)
    assert json.loads(metadata["hyperparameters"]) == {
        "vocab_size": 101, "num_tokens": 8, "embedding_degree": 8, "num_layers": 2, "num_heads": 2,
        "head_size": 4, "pos_enc": "absolute"}
    assert metadata["step"] == "3" and metadata["format"] == "femtogpt"
    tok = TextTokenizer.from_json(metadata["tokenizer"], json.loads(metadata["tokenizer_meta"]))
    np.testing.assert_array_equal(tok.encode("abc;x"), session.tokenizer.encode("abc;x"))


def test_the_safetensors_library_reads_it(model):
    from safetensors import numpy as safetensors_numpy  # in the test extra
    run("export", "--out", "w.safetensors")
    loaded = safetensors_numpy.load_file(str(model.parent / "w.safetensors"))
    for name, view in load(model).model.params.named().items():
        np.testing.assert_array_equal(loaded[name], view)


def test_npz_round_trip_and_format_flag(model):
    run("export", "--out", "w.npz")
    run("export", "--out", "w.bin", "--format", "npz")
    named = load(model).model.params.named()
    for path in ("w.npz", "w.bin"):
        z = np.load(model.parent / path)  # no pickles: loads with the default allow_pickle=False
        assert json.loads(str(z["__metadata__"]))["step"] == "3"
        for name, view in named.items():
            np.testing.assert_array_equal(z[name], view)


def test_export_errors_are_one_line(model):
    run("export", "--out", "w.safetensors")
    before = (model.parent / "w.safetensors").read_bytes()
    r = run("export", "--out", "w.safetensors", ok=False)
    assert r.exit_code != 0 and r.output.strip().splitlines() == [
        "Error: w.safetensors already exists; pass --force to overwrite it"]
    assert (model.parent / "w.safetensors").read_bytes() == before
    r = run("export", "--model", "missing.dat", "--out", "x.safetensors", ok=False)
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and "missing.dat" in r.output
    assert not (model.parent / "x.safetensors").exists()
    r = run("export", "--out", "no_such_dir/x.safetensors", ok=False)
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and "does not exist" in r.output
