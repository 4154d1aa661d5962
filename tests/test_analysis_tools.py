"""The fork's analysis tools, fixed (issue 16): cluster-tokens (any vocabulary, identical embeddings
first), chunks (sorted, complete, seeded), dump-tokenizer (exact ids again), swap-kq (twice is the
identity, moments included), and their bad input as one line."""
import json

import numpy as np
import pytest

from femtogpt.config import Hyperparameters
from femtogpt.engine.params import Parameters
from femtogpt.io.model_file import load_model_file
from femtogpt.model.gpt import GPT
from femtogpt.text.build import build_tokenizer
from femtogpt.tools.analysis import cluster_tokens
from tests.run_cli import run, tiny_model_folder


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    tiny_model_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


class Three:  # a 3-token vocabulary
    def decode(self, ids):
        return "abc"[ids[0]]


def test_cluster_tokens_on_3_tokens_and_identical_embeddings_come_first():
    hp = Hyperparameters(vocab_size=3, num_tokens=4, embedding_degree=4, num_layers=1, num_heads=2)
    model = GPT(hp, Parameters(hp).init_reference(1))
    result = cluster_tokens(model, Three(), top=10)
    assert [h for h, _ in result] == [0, 1] and all(len(pairs) == 3 for _, pairs in result)  # 3 pairs exist
    emb = model.params.values.views["token_embedding"]
    for h, pairs in result:
        x = emb[:, 2 * h:2 * h + 2].astype(np.float64)
        for cos, a, b, _, _ in pairs:
            assert a < b and cos == pytest.approx(x[a] @ x[b] / np.linalg.norm(x[a]) / np.linalg.norm(x[b]))
        assert [c for c, *_ in pairs] == sorted((c for c, *_ in pairs), reverse=True)
    tok = build_tokenizer("ascii")
    hp = Hyperparameters(vocab_size=tok.vocab_size, num_tokens=4, embedding_degree=8, num_layers=1, num_heads=2)
    model = GPT(hp, Parameters(hp).init_reference(2))
    emb = model.params.values.views["token_embedding"]
    emb[70] = emb[12]  # two tokens made identical: first in every head, cosine 1
    for h, pairs in cluster_tokens(model, tok, top=2):
        assert (pairs[0][1], pairs[0][2]) == (12, 70) and pairs[0][0] == pytest.approx(1.0)


def test_cluster_tokens_command_and_a_head_out_of_range(workdir):
    out = run("cluster-tokens", "--top", 2).output.splitlines()
    assert out[0] == "---- Head 0 ----" and len(out) == 2 * 3
    data = json.loads(run("cluster-tokens", "--head", 1, "--top", 3, "--json").output)
    assert [d["head"] for d in data] == [1] and len(data[0]["pairs"]) == 3
    result = run("cluster-tokens", "--head", 2, ok=False)
    assert result.exit_code == 1 and result.output == "Error: --head 2: model.dat has 2 heads (0..1)\n"


def test_chunks_are_sorted_complete_and_the_same_for_the_same_seed(workdir):
    run("chunks", "--count", 40, "--seed", 3, "--out", "a.json", "--chunk-size", 6)
    run("chunks", "--count", 40, "--seed", 3, "--out", "b.json", "--chunk-size", 6)
    a = json.loads((workdir / "a.json").read_text())
    assert (workdir / "a.json").read_bytes() == (workdir / "b.json").read_bytes()
    assert len(a) == 40 and [r["loss"] for r in a] == sorted(r["loss"] for r in a)
    text = (workdir / "dataset.txt").read_text()
    assert all(text[r["start"]:r["start"] + 6] == r["chunk"] for r in a)  # ascii: a token is a character
    run("chunks", "--count", 40, "--seed", 4, "--out", "c.json", "--chunk-size", 6)
    assert json.loads((workdir / "c.json").read_text()) != a
    result = run("chunks", "--count", 0, "--out", "d.json", ok=False)
    assert result.exit_code == 2 and "--count" in result.output
    (workdir / "short.txt").write_text("abc")
    result = run("chunks", "--dataset", "short.txt", "--out", "e.json", ok=False)
    assert result.exit_code == 1 and "fewer than one chunk of 9" in result.output


def test_dump_tokenizer_then_init_bpe_gives_the_same_ids(workdir):
    run("init", "--model", "bpe.dat", "--tokenizer", "bpe", "--num-tokens", 8, "--embedding-degree", 8,
        "--num-layers", 1, "--num-heads", 2, "--seed", 1)
    run("dump-tokenizer", "--model", "bpe.dat", "--out", "dumped.json")
    run("init", "--model", "again.dat", "--tokenizer", "bpe", "--tokenizer-data", "dumped.json", "--num-tokens", 8,
        "--embedding-degree", 8, "--num-layers", 1, "--num-heads", 2, "--seed", 1)
    from femtogpt.io.checkpoint import load

    a, b = load(workdir / "bpe.dat").tokenizer, load(workdir / "again.dat").tokenizer
    text = "hello world, hello femtogpt. Ünïcödé too"
    assert list(a.encode(text)) == list(b.encode(text)) and a.vocab_size == b.vocab_size


def test_swap_kq_twice_gives_back_the_tensors_and_moments_bitwise(workdir):
    run("train", "--steps", 3, "--batch-size", 2, "--quiet")
    run("swap-kq", "--input", "model.dat", "--output", "once.dat")
    run("swap-kq", "--input", "once.dat", "--output", "twice.dat")
    m, once, twice = (load_model_file(workdir / n) for n in ("model.dat", "once.dat", "twice.dat"))
    for part in ("q", "k", "v"):
        for h in range(2):
            name = f"head_0_{h}_{part}"
            other = {"q": "k", "k": "q", "v": "v"}[part]
            np.testing.assert_array_equal(once.tensors[name], m.tensors[f"head_0_{h}_{other}"])
            np.testing.assert_array_equal(once.optimizer["m"][name], m.optimizer["m"][f"head_0_{h}_{other}"])
    for name in m.tensors:
        np.testing.assert_array_equal(twice.tensors[name], m.tensors[name])
        for moment in "mv":
            np.testing.assert_array_equal(twice.optimizer[moment][name], m.optimizer[moment][name])
    assert [log["kind"] for log in twice.logs][-2:] == ["SwapKQ", "SwapKQ"]
