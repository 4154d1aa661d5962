"""init-with and insert-layer: what is copied bitwise, where every old tensor goes, what the optimizer
keeps, that the near-identity layer is a no-op, and the two commands through the CLI."""
from pathlib import Path

import numpy as np
import pytest

from femtogpt.io.model_file import load_model_file
from femtogpt.config import Hyperparameters
from femtogpt.tasks.toy_data import generate_text
from femtogpt.engine.params import reference_names
from femtogpt.io.checkpoint import create, load
from femtogpt.growth.surgery import (VOCAB_TENSORS, init_with, insert_layer, insert_moves, layer_names, layer_of,
                              rename_layer)
from femtogpt.text.build import build_tokenizer
from femtogpt.text.tokenizer_files import from_token_list
from femtogpt.train.step import sample_batch, train_step
from tests.run_cli import run
from tests.models import train_steps

HP = Hyperparameters(vocab_size=101, num_tokens=8, embedding_degree=16, num_layers=3, num_heads=2,
                     pos_enc="none")
TEXT = generate_text("simple_dummy", 300, seed=1)


def trained(steps=6, seed=0, hp=HP):
    """A small session trained a few steps, with every LN gain moved off its init (so copies are
    distinguishable from a fresh draw)."""
    tok = build_tokenizer("ascii")
    s = create(hp, tok, seed=seed)
    train_steps(s, TEXT, steps, seed)
    rng = np.random.default_rng(seed)
    for name, view in s.model.params.named().items():
        if name.endswith("_coeff"):
            view += rng.normal(0.5, 0.2, view.shape).astype(view.dtype)  # like trained gains
    return s


def test_layer_names_parse_and_rename():
    assert layer_of("head_2_1_q") == 2 and layer_of("feedforward1_0_bias") == 0
    assert layer_of("atten_norm_11_coeff") == 11
    for name in ("head_norm_coeff", "head_map_weights", "token_embedding", "head_map_bias"):
        assert layer_of(name) is None
    assert rename_layer("head_2_1_q", 3) == "head_3_1_q"
    assert rename_layer("atten_norm_1_coeff", 2) == "atten_norm_2_coeff"
    assert len(layer_names(HP, 1)) == 10 + 3 * HP.num_heads


# ------------------------------------------------------------------------------------ init-with

def test_init_with_copies_the_body_bitwise_and_keeps_lineage():
    parent = trained()
    tok = from_token_list(["a", "b", "c", ";", "\n", "zz"])
    child, report = init_with(parent, tok, num_tokens=12, seed=7, parent_path="p.dat")
    assert child.hp.vocab_size == tok.vocab_size and child.hp.num_tokens == 12
    assert child.hp.embedding_degree == HP.embedding_degree and child.hp.num_layers == HP.num_layers
    src, dst = parent.model.params.named(), child.model.params.named()
    assert report.copied == [n for n in reference_names(HP) if n not in VOCAB_TENSORS]
    for name in report.copied:
        assert dst[name].tobytes() == src[name].tobytes(), name
    assert report.fresh == list(VOCAB_TENSORS) and report.shared_tokens is None
    assert dst["token_embedding"].shape == (tok.vocab_size, 16)
    assert not dst["head_map_bias"].any()
    assert child.optimizer is None
    assert child.logs[:len(parent.logs)] == parent.logs
    last = child.logs[-1]
    assert last["kind"] == "InitWith" and last["parent"] == "p.dat"
    assert last["parent_last_log_id"] == parent.logs[-1]["id"]
    assert last["hyperparameters"]["vocab_size"] == tok.vocab_size and last["seed"] == 7
    # the child is a working model: a step trains
    ids = tok.encode(TEXT)
    opt = child.ensure_optimizer()
    x, y = sample_batch(ids, 2, 12, 0, 0)
    assert np.isfinite(train_step(child.model, opt, x, y)[0])


def test_init_with_keep_shared_tokens_copies_rows():
    parent = trained()
    tok = from_token_list(["a", "b", "zz", ";"])
    child, report = init_with(parent, tok, seed=1, keep_shared_tokens=True)
    assert report.shared_tokens == 4  # <unk>, a, b and ; (the ascii vocabulary has no "zz")
    src, dst = parent.model.params.named(), child.model.params.named()
    ptok = parent.tokenizer
    for ch in "ab;":
        i, j = int(tok.encode(ch)[0]), int(ptok.encode(ch)[0])
        assert dst["token_embedding"][i].tobytes() == src["token_embedding"][j].tobytes()
        assert dst["head_map_weights"][:, i].tobytes() == src["head_map_weights"][:, j].tobytes()
        assert dst["head_map_bias"][i] == src["head_map_bias"][j]
    plain, _ = init_with(parent, tok, seed=1)
    zz = int(tok.encode("zz")[0])
    fresh = plain.model.params.named()  # a token only the child has keeps its fresh init
    assert dst["token_embedding"][zz].tobytes() == fresh["token_embedding"][zz].tobytes()
    assert dst["head_map_weights"][:, zz].tobytes() == fresh["head_map_weights"][:, zz].tobytes()


def test_init_with_is_seeded():
    parent = trained(steps=1)
    tok = from_token_list(["a", "b"])
    a, _ = init_with(parent, tok, seed=3)
    b, _ = init_with(parent, tok, seed=3)
    assert a.model.params.data.tobytes() == b.model.params.data.tobytes()


# ------------------------------------------------------------------------------------ insert-layer

@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_insert_layer_moves_every_old_tensor(k):
    s = trained()
    grown, report = insert_layer(s, k, init="random", seed=5)
    assert grown.hp.num_layers == HP.num_layers + 1
    old, new = s.model.params.named(), grown.model.params.named()
    for name, value in old.items():
        l = layer_of(name)
        target = name if l is None or l < k else rename_layer(name, l + 1)
        assert new[target].tobytes() == value.tobytes(), (name, target)
    assert report.new == layer_names(grown.hp, k)
    assert set(report.moved) == {n for n in old if layer_of(n) is not None and layer_of(n) >= k}
    # the new layer is the reference's random init: gains ~ N(0, 0.02), not copies of anything
    gain = new[f"norm_{k}_coeff"]
    assert abs(gain).max() < 0.1 and gain.std() > 0.005
    assert grown.logs[:-1] == s.logs
    assert grown.logs[-1]["kind"] == "InsertLayer" and grown.logs[-1]["index"] == k
    assert grown.logs[-1]["init"] == "random"


def test_insert_moves_is_a_bijection_onto_the_old_names_minus_the_new_layer():
    moves = insert_moves(HP, 1)
    assert len(set(moves.values())) == len(moves)
    grown = Hyperparameters(vocab_size=101, num_tokens=8, embedding_degree=16, num_layers=4, num_heads=2,
                            pos_enc="none")
    assert set(reference_names(grown)) - set(moves.values()) == set(layer_names(grown, 1))


def test_near_identity_layer_values():
    s = trained()
    grown, _ = insert_layer(s, 1, init="near-identity", seed=5)
    p = grown.model.params.named()
    for name in ("norm_1_coeff", "atten_norm_1_coeff"):
        assert (p[name] == 1).all()
    for name in ("norm_1_bias", "atten_norm_1_bias", "proj_1_weights", "proj_1_bias", "feedforward1_1_bias",
                 "feedforward2_1_weights", "feedforward2_1_bias"):
        assert not p[name].any(), name
    for name in ("head_1_0_q", "head_1_1_v", "feedforward1_1_weights"):
        assert 0.01 < p[name].std() < 0.03, name  # small random, so gradients flow


@pytest.mark.parametrize("k", [0, 1, 3])
def test_near_identity_insertion_keeps_the_function(k):
    s = trained()
    ids = s.tokenizer.encode(TEXT)[:32].reshape(4, 8)
    before = s.model.logits(ids)
    near, _ = insert_layer(s, k, init="near-identity", seed=5)
    rand, _ = insert_layer(s, k, init="random", seed=5)
    scale = np.abs(before).max()
    assert np.abs(near.model.logits(ids) - before).max() < 1e-3 * scale
    assert np.abs(rand.model.logits(ids) - before).max() > 0.05 * scale


def test_insert_layer_keeps_moments_and_step():
    s = trained()
    grown, report = insert_layer(s, 1, seed=5)
    assert report.optimizer == "kept" and grown.optimizer.step == s.optimizer.step == report.step
    from femtogpt.engine.params import named_views

    for key in ("m", "v"):
        old = named_views(s.hp, getattr(s.optimizer, key))
        new = named_views(grown.hp, getattr(grown.optimizer, key))
        for name, target in insert_moves(s.hp, 1).items():
            assert new[target].tobytes() == old[name].tobytes(), (key, name)
        for name in layer_names(grown.hp, 1):
            assert not new[name].any()
    assert grown.optimizer.params is grown.model.params
    reset, report = insert_layer(s, 1, seed=5, reset_optimizer=True)
    assert reset.optimizer is None and report.optimizer == "reset"
    assert [log["kind"] for log in reset.logs[-2:]] == ["InsertLayer", "ResetOptimizer"]
    assert s.hp.num_layers == 3 and s.optimizer is not None  # the input is untouched


def test_insert_layer_rejects_bad_index_and_init():
    s = trained(steps=0)
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="between 0 and 3"):
            insert_layer(s, bad)
    with pytest.raises(ValueError, match="init"):
        insert_layer(s, 0, init="identity")


# ------------------------------------------------------------------------------------ CLI



@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    Path("dataset.txt").write_text(TEXT)
    s = trained()
    s.save("parent.dat")
    return tmp_path


def test_cli_init_with(workdir):
    out = run("init-with", "--parent", "parent.dat", "--child", "child.dat", "--tokenizer", "char",
              "--tokenizer-data", "dataset.txt", "--num-tokens", "6", "--seed", "2",
              "--keep-shared-tokens").output
    assert "Copied from parent.dat: 50 tensors" in out and "Fresh: token_embedding, head_map_weights" in out
    assert "Shared tokens:" in out
    parent, child = load_model_file(Path("parent.dat")), load_model_file(Path("child.dat"))
    assert child.hp.num_tokens == 6 and child.hp.num_layers == 3
    assert child.tensors["proj_2_weights"].tobytes() == parent.tensors["proj_2_weights"].tobytes()
    assert [log["id"] for log in child.logs[:-1]] == [log["id"] for log in parent.logs]
    result = run("init-with", "--parent", "parent.dat", "--child", "child.dat", ok=False)
    assert result.exit_code == 1 and "--force" in result.output
    result = run("init-with", "--parent", "missing.dat", "--child", "c2.dat", ok=False)
    assert result.exit_code == 1 and "missing.dat" in result.output and "Traceback" not in result.output


def test_cli_insert_layer_in_place_and_errors(workdir):
    before = load("parent.dat")
    out = run("insert-layer", "--input", "parent.dat", "--output", "parent.dat", "--insert-at", "3",
              "--seed", "1").output
    assert "near-identity layer at index 3" in out and "kept (step 6" in out
    after = load("parent.dat")
    assert after.hp.num_layers == 4 and after.step == before.step
    assert after.logs[-1]["kind"] == "InsertLayer"
    run("insert-layer", "--input", "parent.dat", "--output", "r.dat", "--insert-at", "0", "--init", "random",
        "--reset-optimizer")
    assert load("r.dat").optimizer is None
    result = run("insert-layer", "--input", "parent.dat", "--output", "r.dat", "--insert-at", "0", ok=False)
    assert result.exit_code == 1 and "--force" in result.output
    result = run("insert-layer", "--input", "parent.dat", "--output", "x.dat", "--insert-at", "9", ok=False)
    assert result.exit_code == 1 and "0..4" in result.output and not Path("x.dat").exists()
