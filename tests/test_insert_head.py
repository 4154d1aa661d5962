"""insert-head and the attention width D = H*hs it needs apart from E: a float64 gradcheck and the KV
cache of models with D != E, the function kept at insertion, the optimizer moments kept bitwise, training
after it, the saved file, and the command's one-line refusals."""
from pathlib import Path

import numpy as np
import pytest

from femtogpt.config import POS_ENCODINGS, Hyperparameters
from femtogpt.engine.params import Parameters, named_views, reference_names
from femtogpt.growth.heads import head_names, insert_head
from femtogpt.io.checkpoint import assemble, create, load
from femtogpt.io.model_file import load_model_file
from femtogpt.model.kv_cache import Generator
from femtogpt.tasks.toy_data import generate_text
from femtogpt.text.build import build_tokenizer
from femtogpt.train.step import sample_batch, train_step
from tests.gradcheck import check_model_grads
from tests.models import make_test_model, spread_weights, train_steps
from tests.run_cli import run

TEXT = generate_text("simple_dummy", 300, seed=1)
WIDER, NARROWER = dict(num_heads=2, head_size=6), dict(num_heads=3, head_size=2)  # E = 8: D = 12, D = 6
# (even head sizes: rotary needs them)


# ------------------------------------------------------------------------ the engine with D != E

def test_hyperparameters_head_size_defaults_to_E_over_H_and_is_free_when_given():
    hp = Hyperparameters(vocab_size=5, embedding_degree=8, num_heads=2)
    assert hp.head_size == 4 and hp.attention_width == 8 and hp.to_dict()["head_size"] == 4
    assert hp == Hyperparameters(vocab_size=5, embedding_degree=8, num_heads=2, head_size=4)
    wide = Hyperparameters(vocab_size=5, num_tokens=4, embedding_degree=8, num_layers=2, num_heads=3,
                           head_size=4).validate()
    E, D, V, L = 8, 12, 5, 2
    assert wide.num_params() == Parameters(wide).size == 2 * V * E + V + L * (4 * E * D + 8 * E * E + 10 * E) + 2 * E
    shapes = dict(Parameters(wide).values.layout)
    assert shapes["qkv_0"] == (E, 3 * D) and shapes["proj_1_weights"] == (D, E)
    with pytest.raises(ValueError, match=r"embedding_degree \(8\) must be divisible by num_heads \(3\)"):
        Hyperparameters(vocab_size=5, embedding_degree=8, num_heads=3).validate()
    with pytest.raises(ValueError, match="head_size must be a positive integer, got 0"):
        Hyperparameters(vocab_size=5, embedding_degree=8, num_heads=2, head_size=0).validate()


def test_reference_views_address_the_heads_in_a_wider_qkv():
    hp = Hyperparameters(vocab_size=5, num_tokens=4, embedding_degree=8, num_layers=1, **WIDER)
    params = Parameters(hp, np.float64)
    qkv = params.values.views["qkv_0"]
    qkv[...] = np.arange(qkv.size).reshape(qkv.shape)
    named = params.named()
    for h in range(2):
        for k, part in enumerate("qkv"):
            col = k * 12 + h * 6
            assert named[f"head_0_{h}_{part}"].shape == (8, 6)
            assert (named[f"head_0_{h}_{part}"] == qkv[:, col:col + 6]).all()


@pytest.mark.parametrize("shape", [WIDER, NARROWER], ids=["D>E", "D<E"])
@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
def test_whole_model_gradcheck_by_tensor_name_when_D_is_not_E(shape, pos_enc):
    model = make_test_model(pos_enc=pos_enc, num_layers=2, **shape)
    assert model.hp.attention_width != model.hp.embedding_degree
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 11, (2, 4)), rng.integers(0, 11, (2, 4))

    check_model_grads(model, ids, targets, 0.2)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("shape", [WIDER, NARROWER], ids=["D>E", "D<E"])
def test_kv_cache_generation_equals_the_full_forward_when_D_is_not_E(dtype, tol, shape):
    model = make_test_model(dtype, 0, num_tokens=6, num_layers=2, pos_enc="absolute", **shape)
    ids = np.random.default_rng(1).integers(0, 11, 6)
    full = model.logits(ids[None])[0]
    assert np.abs(full).max() > 0.5
    gen = Generator(model)
    assert gen.cache.k.shape == (2, 6, model.hp.attention_width)
    for t in range(6):
        np.testing.assert_allclose(gen.feed([ids[t]]), full[t], rtol=0, atol=tol)
    prefill = Generator(model).feed(ids)  # a batched prefill, the last layer on the newest row only
    np.testing.assert_allclose(prefill, full[-1], rtol=0, atol=tol)


def test_trace_and_buffers_of_a_wider_model():
    from femtogpt.model.buffers import program_buffers

    model = make_test_model(np.float32, 0, num_layers=2, **WIDER)
    tr = model.forward_trace(np.zeros((1, 4), np.int64), attention=True)
    assert tr.attn.shape == (2, 1, 4, 8) and tr.probs.shape == (2, 1, 2, 4, 4)
    sizes = dict((name, shape) for name, shape, _ in program_buffers(model.hp, 1, 4))
    assert sizes["qkv0.out"] == (4, 36) and sizes["attn0.out"] == (4, 12) and sizes["proj.set0.dx"] == (4, 12)


# ------------------------------------------------------------------------ insert-head

def trained(hp, steps=6, seed=0, dtype=np.float32):
    """A small model trained a few steps with AdamW (so its moments are nonzero), weights spread off the
    init so every logit depends on them."""
    tok = build_tokenizer("ascii")
    s = create(hp, tok, seed=seed)
    if dtype != np.float32:
        params = Parameters(hp, dtype).load(s.model.params.named())
        s = assemble(hp, params, tok, s.logs, s.train_state)
    spread_weights(s.model.params, seed)
    return train_steps(s, TEXT, steps, seed)


def hp_of(pos_enc="none", **kw):
    return Hyperparameters(**{"vocab_size": 101, "num_tokens": 8, "embedding_degree": 16, "num_layers": 3,
                              "num_heads": 2, "pos_enc": pos_enc, **kw})


def batch(s):
    return s.tokenizer.encode(TEXT)[:32].reshape(4, 8)


@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
def test_logits_are_unchanged_by_insert_head(pos_enc):
    s = trained(hp_of(pos_enc))
    ids = batch(s)
    before = s.model.logits(ids)
    grown, report = insert_head(s, seed=3)
    assert grown.hp.num_heads == 3 and grown.hp.head_size == 8 and grown.hp.attention_width == 24
    assert report.head == 2 and report.new == head_names(grown.hp, 2)
    after = grown.model.logits(ids)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6 * np.abs(before).max())  # float32 rounding
    twice, _ = insert_head(grown, seed=4)  # D != E already: still the same function
    np.testing.assert_allclose(twice.model.logits(ids), before, rtol=0, atol=1e-6 * np.abs(before).max())
    # the new head is really computed: its q/k/v are drawn, and nonzero proj rows would change the logits
    named = twice.model.params.named()
    assert all(np.abs(named[n]).max() > 0 for n in head_names(twice.hp, 3))
    named["proj_0_weights"][24:] = np.random.default_rng(0).normal(0, 0.5, (8, 16))  # not constant: LN removes that
    assert np.abs(twice.model.logits(ids) - before).max() > 1e-3


def test_logits_are_unchanged_in_float64():
    s = trained(hp_of("absolute"), dtype=np.float64)
    assert s.model.dtype == np.float64
    ids = batch(s)
    before = s.model.logits(ids)
    grown, _ = insert_head(s, seed=3)
    assert grown.model.dtype == np.float64
    np.testing.assert_allclose(grown.model.logits(ids), before, rtol=0, atol=1e-13 * np.abs(before).max())


def test_every_old_value_and_moment_is_kept_bitwise_and_new_slices_start_at_zero():
    s = trained(hp_of())
    grown, report = insert_head(s, seed=3)
    assert report.optimizer == "kept" and grown.step == s.step == report.step == 6
    old, new = s.model.params.named(), grown.model.params.named()
    for name in reference_names(s.hp):
        got = new[name][:16] if name.startswith("proj_") and name.endswith("_weights") else new[name]
        assert got.tobytes() == old[name].tobytes(), name
    for l in range(3):
        assert not new[f"proj_{l}_weights"][16:].any()
    for key in ("m", "v"):
        m_old, m_new = named_views(s.hp, getattr(s.optimizer, key)), named_views(grown.hp, getattr(grown.optimizer, key))
        for name in reference_names(s.hp):
            got = m_new[name][:16] if name.startswith("proj_") and name.endswith("_weights") else m_new[name]
            assert got.tobytes() == m_old[name].tobytes(), (key, name)
            assert np.abs(m_old[name]).max() > 0, (key, name)  # the kept moments are real ones
        for l in range(3):
            assert not m_new[f"proj_{l}_weights"][16:].any()
        assert not any(m_new[n].any() for n in report.new)
    assert grown.optimizer.params is grown.model.params
    assert grown.logs[-1]["kind"] == "InsertHead" and grown.logs[-1]["head"] == 2
    assert s.hp.num_heads == 2 and s.model.params.values.views["qkv_0"].shape == (16, 48)  # the input is untouched


def test_reset_optimizer_and_a_model_without_one():
    s = trained(hp_of())
    reset, report = insert_head(s, seed=3, reset_optimizer=True)
    assert reset.optimizer is None and report.optimizer == "reset"
    assert [log["kind"] for log in reset.logs[-2:]] == ["InsertHead", "ResetOptimizer"]
    fresh, report = insert_head(create(hp_of(), build_tokenizer("ascii"), seed=1), seed=3)
    assert fresh.optimizer is None and report.optimizer == "none"


def test_the_same_seed_draws_the_same_head():
    s = trained(hp_of(), steps=0)
    a, b, c = insert_head(s, seed=3)[0], insert_head(s, seed=3)[0], insert_head(s, seed=4)[0]
    pa, pb, pc = (x.model.params.named()["head_1_2_q"] for x in (a, b, c))
    assert pa.tobytes() == pb.tobytes() != pc.tobytes()
    assert 0.01 < pa.std() < 0.03  # N(0, 0.02)


def test_training_after_insertion_moves_the_new_head():
    s = trained(hp_of("absolute"))
    grown, _ = insert_head(s, seed=3)
    ids = grown.tokenizer.encode(TEXT)
    named = grown.model.params.named()
    q0 = named["head_1_2_q"].copy()
    losses = []
    for _ in range(5):
        x, y = sample_batch(ids, 4, 8, 0, grown.optimizer.step)
        losses.append(train_step(grown.model, grown.optimizer, x, y)[0])
    assert all(np.isfinite(losses)) and grown.step == 11
    for l in range(3):
        assert np.abs(named[f"proj_{l}_weights"][16:]).max() > 1e-3, l  # ~lr per step: away from zero
    assert np.abs(named["head_1_2_q"] - q0).max() > 0  # and then the head's own weights learn


def test_the_saved_file_reloads(tmp_path):
    s = trained(hp_of())
    grown, _ = insert_head(s, seed=3)
    grown.save(tmp_path / "g.dat")
    mf = load_model_file(tmp_path / "g.dat")
    assert mf.hp == grown.hp and mf.hp.head_size == 8 and mf.tensors["proj_0_weights"].shape == (24, 16)
    back = load(tmp_path / "g.dat")
    assert back.step == 6 and back.logs[-1]["kind"] == "InsertHead"
    ids = batch(s)
    assert back.model.logits(ids).tobytes() == grown.model.logits(ids).tobytes()
    for key in ("m", "v"):
        assert getattr(back.optimizer, key).tobytes() == getattr(grown.optimizer, key).tobytes()


def test_a_file_whose_head_size_does_not_match_its_tensors_is_one_line(tmp_path):
    from tests.hostile_files import crafted, set_hp

    path = tmp_path / "m.dat"
    trained(hp_of(), steps=0).save(path)
    bad = crafted(tmp_path / "bad.dat", path, set_hp(head_size=7))
    from femtogpt.io.model_file import ModelFileError

    with pytest.raises(ModelFileError, match=r"tensor head_0_0_k has shape \[16, 8\], expected \[16, 7\]"):
        load(bad)


# ------------------------------------------------------------------------ the command

@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    Path("dataset.txt").write_text(TEXT)
    trained(hp_of()).save("model.dat")
    return tmp_path


def test_cli_insert_head_in_place_then_train(workdir):
    before = load("model.dat")
    out = run("insert-head", "--input", "model.dat", "--output", "model.dat", "--all-layers", "--seed", "1").output
    assert "Inserted head 2 (head size 8) into each of the 3 layers" in out and "2 -> 3 heads" in out
    assert "attention width 16 -> 24 (embedding 16)" in out and "kept (step 6" in out
    after = load("model.dat")
    assert after.hp.num_heads == 3 and after.step == 6 and after.logs[-1]["kind"] == "InsertHead"
    ids = batch(before)
    np.testing.assert_allclose(after.model.logits(ids), before.model.logits(ids), rtol=0, atol=1e-6)
    run("train", "--dataset", "dataset.txt", "--steps", "2", "--batch-size", "2")
    assert load("model.dat").step == 8
    out = run("info").output
    assert "heads 3 (head size 8)" in out
    refused = run("cluster-tokens", ok=False)  # the fork's head slices of the embedding need D = E
    assert refused.exit_code == 1 and "num_heads * head_size = embedding_degree" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and "Traceback" not in refused.output


def test_cli_insert_head_refusals_are_one_line(workdir):
    def refused(*args):
        result = run("insert-head", *args, ok=False)
        lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code in (1, 2) and len(lines) == 1 and "Traceback" not in result.output, result.output
        assert not Path("out.dat").exists()
        return lines[0]

    assert "give --all-layers" in refused("--output", "out.dat")
    assert "has 3 layers (0..2)" in refused("--layer", "7", "--output", "out.dat")
    assert "same number of heads (num_heads 2)" in refused("--layer", "1", "--output", "out.dat")
    assert "give one" in refused("--layer", "1", "--all-layers", "--output", "out.dat")
    Path("notamodel.dat").write_text("hello")
    assert "notamodel.dat" in refused("--input", "notamodel.dat", "--output", "out.dat", "--all-layers")
    assert "missing.dat" in refused("--input", "missing.dat", "--output", "out.dat", "--all-layers")
    run("insert-head", "--output", "grown.dat", "--all-layers")
    assert "--force" in refused("--output", "grown.dat", "--all-layers").replace("out.dat", "")
    run("insert-head", "--output", "grown.dat", "--all-layers", "--force", "--reset-optimizer")
    assert load("grown.dat").optimizer is None


def test_tools_that_read_heads_work_on_a_grown_model():
    from femtogpt.growth.compare import compare_models, describe_event
    from femtogpt.tools.analysis import cluster_tokens, swap_kq

    s = trained(hp_of(), steps=2)
    grown, _ = insert_head(s, seed=3)
    named = grown.model.params.named()
    q, k = named["head_2_2_q"].copy(), named["head_2_2_k"].copy()
    m_q = named_views(grown.hp, grown.optimizer.m)["head_0_1_q"].copy()
    swap_kq(grown)
    assert named["head_2_2_k"].tobytes() == q.tobytes() and named["head_2_2_q"].tobytes() == k.tobytes()
    assert named_views(grown.hp, grown.optimizer.m)["head_0_1_k"].tobytes() == m_q.tobytes()
    swap_kq(grown)
    assert named["head_2_2_q"].tobytes() == q.tobytes()
    with pytest.raises(ValueError, match=r"num_heads \* head_size = embedding_degree"):
        cluster_tokens(grown.model, grown.tokenizer)
    result = compare_models(s.to_model_file(), grown.to_model_file())
    assert result.only_in_b == head_names(grown.hp, 2)
    assert {m["name"] for m in result.shape_mismatch} == {f"proj_{l}_weights" for l in range(3)}
    assert [describe_event(e) for e in result.lineage.events_b] == ["insert-head (head 2 in every layer)"]
