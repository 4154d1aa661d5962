"""`femtogpt inspect` (issue 16): its numbers checked against what they must equal, its table within 80
columns, its JSON and picture."""
import json

import numpy as np
import pytest

from femtogpt.config import Hyperparameters
from femtogpt.engine.params import Parameters
from femtogpt.model.gpt import GPT
from femtogpt.tools.inside import layer_stats
from tests.models import spread_weights
from tests.run_cli import run, tiny_model_folder


def batches(V, T, n=3, B=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w = rng.integers(0, V, (B, T + 1))
        out.append((w[:, :-1], w[:, 1:]))
    return out


@pytest.fixture
def model():
    hp = Hyperparameters(vocab_size=17, num_tokens=6, embedding_degree=8, num_layers=3, num_heads=2)
    m = GPT(hp, Parameters(hp, np.float64).init_reference(2))
    spread_weights(m.params, seed=3)  # attention that is not uniform
    return m


def test_the_lens_after_the_last_layer_is_the_models_own_loss_and_the_stream_chains(model):
    data = batches(17, 6)
    stats = layer_stats(model, data)
    own = np.mean([model.mean_loss(ids, t) for ids, t in data])
    assert stats["layers"][-1]["lens_loss"] == pytest.approx(own, rel=1e-9)
    logits = np.concatenate([model.logits(ids) for ids, _ in data])
    targets = np.concatenate([t for _, t in data])
    assert stats["layers"][-1]["lens_top1"] == pytest.approx((logits.argmax(-1) == targets).mean())
    for a, b in zip(stats["layers"], stats["layers"][1:]):
        assert a["rms_out"] == pytest.approx(b["rms_in"], rel=1e-12)
    assert stats["windows"] == 12 and stats["tokens"] == 72
    entropies = np.array([s["entropy"] for s in stats["layers"]])
    assert (entropies > 0).all() and (entropies < stats["max_entropy"]).all()
    assert stats["max_entropy"] == pytest.approx(np.log(np.arange(1, 7)).mean())


def test_uniform_attention_has_the_maximum_entropy(model):
    for l in range(3):
        model.params.values.views[f"qkv_{l}"][:, :16] = 0.0  # Q = K = 0: every visible position alike
    stats = layer_stats(model, batches(17, 6))
    for s in stats["layers"]:
        assert s["entropy"] == pytest.approx([stats["max_entropy"]] * 2, rel=1e-12)


def test_inspect_command_table_json_and_plot(tmp_path, monkeypatch):
    tiny_model_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = run("inspect", "--batches", 2, "--batch-size", 3).output
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert out.splitlines()[0] == "6 windows, 48 positions" and "lens loss" in out
    data = json.loads(run("inspect", "--batches", 2, "--batch-size", 3, "--json").output)
    assert len(data["layers"]) == 1 and set(data["layers"][0]) >= {"rms_in", "attn_ratio", "entropy", "lens_top1"}
    assert f"{data['layers'][0]['lens_loss']:9.4f}" in out.splitlines()[2]  # the table shows the same run
    run("inspect", "--batches", 1, "--plot", "inside.png")
    assert (tmp_path / "inside.png").read_bytes()[:4] == b"\x89PNG"
    result = run("inspect", "--batches", 1, "--plot", "inside.png", ok=False)
    assert "inside.png already exists; pass --force" in result.output


def test_residual_rms_is_the_rms_of_the_traced_hidden_states(model):
    data = batches(17, 6, n=1)
    stats = layer_stats(model, data)
    tr = model.forward_trace(data[0][0])
    for l, s in enumerate(stats["layers"]):
        assert s["rms_in"] == pytest.approx(np.sqrt(np.mean(tr.resid[l] ** 2)), rel=1e-12)
        assert s["ffn_ratio"] == pytest.approx(np.sqrt(np.mean(tr.ffn[l] ** 2) / np.mean(tr.mid[l] ** 2)), rel=1e-12)


def test_a_dataset_shorter_than_one_window_is_one_line(tmp_path, monkeypatch):
    tiny_model_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "short.txt").write_text("hello")
    result = run("inspect", "--dataset", "short.txt", ok=False)
    assert result.exit_code == 1 and result.output == (
        "Error: --dataset short.txt: has 5 tokens; a window needs num_tokens + 1 = 9\n")
