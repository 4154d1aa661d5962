"""The learned and rotary positional encodings: parameter count and init bits, a float64 gradcheck of
the whole model, a NumPy spec forward, the KV cache against the full forward, the step's buffers,
thread independence, the model file, and init, info, insert-layer, init-with, compare and export."""
import json
from pathlib import Path

import numba
import numpy as np
import pytest

from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.engine.autograd import Graph
from femtogpt.engine.params import Parameters, reference_names
from femtogpt.growth.surgery import init_with, insert_layer
from femtogpt.io.checkpoint import create, load
from femtogpt.io.model_file import ModelFileError, load_model_file, save_model_file
from femtogpt.model.buffers import step_buffers, total_bytes
from femtogpt.model.gpt import GPT
from femtogpt.model.kv_cache import Generator
from femtogpt.tasks.toy_data import generate_text
from femtogpt.text.build import build_tokenizer
from femtogpt.train.step import sample_batch, train_step
from tests.gradcheck import check_model_grads, numeric_grad
from tests.models import make_test_model
from tests.ops.test_rotary import spec_rotary
from tests.run_cli import run
from tests.test_buffers import allocated

NEW = ("learned", "rotary")
TEXT = generate_text("simple_dummy", 300, seed=1)


def hp(pos_enc, **kw):
    return Hyperparameters(**{"vocab_size": 11, "num_tokens": 6, "embedding_degree": 8, "num_layers": 2,
                              "num_heads": 2, "pos_enc": pos_enc, **kw})


# ------------------------------------------------------------------------------------ parameters

def test_parameter_count_names_and_init_bits():
    none = Parameters(hp("none")).init_reference(3)
    learned = Parameters(hp("learned")).init_reference(3)
    rotary = Parameters(hp("rotary")).init_reference(3)
    T, E = 6, 8
    assert learned.size == hp("learned").num_params() == none.size + T * E == hp("none").num_params() + T * E
    assert rotary.size == hp("rotary").num_params() == none.size  # rotary adds no parameter
    assert reference_names(hp("learned")) == ["token_embedding", "pos_embedding"] + reference_names(hp("none"))[1:]
    assert reference_names(hp("rotary")) == reference_names(hp("none"))
    a, b, c = none.named(), learned.named(), rotary.named()
    for name in a:  # the new encodings leave every other tensor's init bits as they were
        assert a[name].tobytes() == b[name].tobytes() == c[name].tobytes(), name
    pe = b["pos_embedding"]
    assert pe.shape == (T, E) and 0.01 < pe.std() < 0.03 and abs(pe.mean()) < 0.01  # N(0, 0.02)
    assert Hyperparameters(vocab_size=101, pos_enc="learned").num_params() == 326_821 + 80 * 80


def test_rotary_needs_an_even_head_size():
    with pytest.raises(ValueError, match="even head size"):
        hp("rotary", embedding_degree=6, num_heads=2).validate()
    hp("learned", embedding_degree=6, num_heads=2).validate()  # only rotary cares


# ------------------------------------------------------------------------------------ the model

@pytest.mark.parametrize("pos_enc,layers,dropout", [("learned", 1, 0.0), ("rotary", 2, 0.0), ("rotary", 1, 0.2),
                                                    ("learned", 2, 0.2)])
def test_whole_model_gradcheck_by_tensor_name(pos_enc, layers, dropout):
    model = make_test_model(np.float64, 0, pos_enc=pos_enc, num_layers=layers)
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 11, (2, 3)), rng.integers(0, 11, (2, 3))  # T = 3 < 4: a shorter batch

    grads = check_model_grads(model, ids, targets, dropout)
    if pos_enc == "learned":  # rows past the batch's T get exactly zero
        assert np.abs(grads["pos_embedding"][:3]).max() > 1e-3 and not grads["pos_embedding"][3:].any()


def layernorm(x, g, b, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * g + b


def spec_logits(model, ids):
    """The reference's equations (§2.2) in NumPy, with the position handling of each encoding."""
    w, h = model.params.values.views, model.hp
    B, T = ids.shape
    NH, hs = h.num_heads, h.head_size
    D = NH * hs
    x = w["token_embedding"][ids]
    if h.pos_enc == "learned":
        x = x + w["pos_embedding"][:T]
    n = layernorm(x, w["norm_0_coeff"], w["norm_0_bias"])
    for l in range(h.num_layers):
        qkv = (n @ w[f"qkv_{l}"]).reshape(B * T, 3 * D)
        if h.pos_enc == "rotary":
            qkv = spec_rotary(qkv, T, NH, hs)
        q, k, v = qkv.reshape(B, T, 3, NH, hs).transpose(2, 0, 3, 1, 4)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)
        s[..., np.triu(np.ones((T, T), bool), 1)] = -np.inf
        p = np.exp(s - s.max(-1, keepdims=True))
        o = ((p / p.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
        m = layernorm(n + o @ w[f"proj_{l}_weights"] + w[f"proj_{l}_bias"], w[f"atten_norm_{l}_coeff"],
                      w[f"atten_norm_{l}_bias"])
        u = m @ w[f"feedforward1_{l}_weights"] + w[f"feedforward1_{l}_bias"]
        f = 0.5 * u * (1 + np.tanh(0.7978845608028654 * (u + 0.044715 * u**3))) @ w[f"feedforward2_{l}_weights"]
        nxt = f"norm_{l + 1}" if l + 1 < h.num_layers else "head_norm"
        n = layernorm(m + f + w[f"feedforward2_{l}_bias"], w[f"{nxt}_coeff"], w[f"{nxt}_bias"])
    return n @ w["head_map_weights"] + w["head_map_bias"]


@pytest.mark.parametrize("pos_enc", NEW)
def test_forward_and_trace_match_the_numpy_spec(pos_enc):
    model = make_test_model(np.float64, 0, pos_enc=pos_enc, num_layers=2, num_tokens=6)
    ids = np.random.default_rng(0).integers(0, 11, (2, 5))
    spec = spec_logits(model, ids)
    np.testing.assert_allclose(model.logits(ids), spec, rtol=0, atol=1e-10)
    trace = model.forward_trace(ids, attention=True)
    np.testing.assert_allclose(model.head(trace.normed[-1]), spec, rtol=0, atol=1e-10)
    w = model.params.values.views
    expected_x0 = w["token_embedding"][ids] + (w["pos_embedding"][:5] if pos_enc == "learned" else 0.0)
    np.testing.assert_array_equal(trace.resid[0], expected_x0)
    np.testing.assert_allclose(trace.probs.sum(-1), 1.0, atol=1e-12)
    # the encoding matters: in one layer without positions, the last position's logits do not depend
    # on the order of the tokens before it; with the encoding they do
    ids, swapped = np.array([[1, 2, 3, 4, 5]]), np.array([[2, 1, 3, 4, 5]])
    for enc in ("none", pos_enc):
        one = make_test_model(np.float64, 0, pos_enc=enc, num_layers=1, num_tokens=6)
        change = np.abs(one.logits(swapped)[:, -1] - one.logits(ids)[:, -1]).max()
        assert change < 1e-12 if enc == "none" else change > 1e-3


@pytest.mark.parametrize("pos_enc", NEW)
def test_attention_wider_than_the_embedding(pos_enc):
    # num_heads * head_size != embedding_degree (insert-head grows the heads): the rotation works on
    # Q and K of width H*hs, the gradients and the KV cache follow
    model = make_test_model(np.float64, 0, pos_enc=pos_enc, num_tokens=5, num_layers=2, num_heads=3, head_size=4)
    assert model.hp.num_heads * model.hp.head_size == 12 != model.hp.embedding_degree
    ids = np.random.default_rng(1).integers(0, 11, 5)
    full, gen = model.logits(ids[None])[0], Generator(model)
    for t in range(5):
        np.testing.assert_allclose(gen.feed([ids[t]]), full[t], rtol=0, atol=1e-10)
    x, y = np.random.default_rng(2).integers(0, 11, (2, 2, 4))
    g = Graph()
    g.backward(model.loss(g, x, y))
    grads = model.params.named_grads()
    for name, view in model.params.named().items():
        num = numeric_grad(lambda: float(model.loss(Graph(record=False), x, y).data), view)
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("pos_enc", NEW)
def test_kv_cache_equals_the_full_forward(pos_enc, dtype, tol):
    model = make_test_model(dtype, 0, pos_enc=pos_enc, num_layers=2, num_tokens=6, vocab_size=13)
    ids = np.random.default_rng(1).integers(0, 13, 6)
    full = model.logits(ids[None])[0]
    gen = Generator(model)
    for t in range(6):  # token by token
        np.testing.assert_allclose(gen.feed([ids[t]]), full[t], rtol=0, atol=tol)
    prefill = Generator(model)  # a prompt in one pass, then one more token past T: a slide to keep
    np.testing.assert_allclose(prefill.feed(ids[:4]), full[3], rtol=0, atol=tol)
    prefill.feed(ids[4:])
    window = prefill.tokens[-2:] + [5]
    np.testing.assert_allclose(prefill.feed([5]), model.logits(np.array([window]))[0, -1], rtol=0, atol=tol)
    assert prefill.tokens == window


@pytest.mark.parametrize("pos_enc", NEW)
def test_step_buffers_are_listed_and_bits_do_not_depend_on_threads(pos_enc):
    h = hp(pos_enc, vocab_size=70, num_tokens=9, embedding_degree=12, num_heads=3, num_layers=3)
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 70, (5, 9)), rng.integers(0, 70, (5, 9))
    results, threads = [], numba.get_num_threads()
    for n in (1, threads):
        model = GPT(h, Parameters(h).init_reference(0))
        numba.set_num_threads(n)
        try:
            for _ in range(2):
                loss = model.loss_and_grad(ids, targets, dropout=0.1, key=1)
        finally:
            numba.set_num_threads(threads)
        results.append((loss, model.params.grad.copy()))
        if n == 1:  # one worker: the list is exact
            listed = step_buffers(h, 5, dropout=True, workers=1)
            real = allocated(model)
            assert len(real) == len(listed) and sum(a.nbytes for a in real) == total_bytes(listed)
    assert results[0][0] == results[1][0] and results[0][1].tobytes() == results[1][1].tobytes()


@pytest.mark.parametrize("pos_enc", NEW)
def test_training_lowers_the_loss_and_moves_the_position_table(pos_enc):
    s = create(hp(pos_enc, vocab_size=101, num_tokens=8, embedding_degree=16), build_tokenizer("ascii"), seed=0)
    opt = s.ensure_optimizer(OptimizerConfig(lr=1e-2, warmup=0))
    before = {n: v.copy() for n, v in s.model.params.named().items()}
    x, y = sample_batch(s.tokenizer.encode(TEXT), 4, 8, 0, 0)
    losses = [train_step(s.model, opt, x, y)[0] for _ in range(15)]
    assert losses[-1] < losses[0] - 0.5
    after = s.model.params.named()
    assert all(not np.array_equal(before[n], after[n]) for n in after if not n.endswith("_bias") or "map" in n)


# ------------------------------------------------------------------------------------ the file

@pytest.mark.parametrize("pos_enc", NEW)
def test_model_file_round_trip_and_a_missing_table_is_refused(tmp_path, pos_enc):
    s = create(hp(pos_enc, vocab_size=101), build_tokenizer("ascii"), seed=2)
    s.ensure_optimizer()
    s.save(tmp_path / "m.dat")
    mf = load_model_file(tmp_path / "m.dat")
    assert mf.hp.pos_enc == pos_enc and ("pos_embedding" in mf.tensors) == (pos_enc == "learned")
    assert ("pos_embedding" in mf.optimizer["m"]) == (pos_enc == "learned")
    back = load(tmp_path / "m.dat")
    for name, view in s.model.params.named().items():
        assert back.model.params.named()[name].tobytes() == view.tobytes(), name
    if pos_enc == "learned":
        mf.tensors.pop("pos_embedding")
        with pytest.raises(ModelFileError, match="missing 'pos_embedding'|missing pos_embedding"):
            save_model_file(tmp_path / "bad.dat", mf)
        assert not (tmp_path / "bad.dat").exists()


def test_crafted_files_with_the_new_encodings_are_one_clear_line(tmp_path):
    from tests.test_checkpoint import load_error, raw_entries, write_raw

    s = create(hp("learned", vocab_size=101), build_tokenizer("ascii"), seed=2)
    s.save(tmp_path / "m.dat")
    cases = [  # (mutation, what the one line says)
        (lambda e: e["tensors"].pop("pos_embedding"), "missing pos_embedding"),
        (lambda e: e["hyperparameters"].update(pos_enc="none"), "unexpected pos_embedding"),
        (lambda e: e["hyperparameters"].update(num_tokens=7), "pos_embedding has shape [6, 8], expected [7, 8]"),
        (lambda e: e["hyperparameters"].update(pos_enc="rotary", embedding_degree=6, head_size=3),
         "rotary positional encoding rotates pairs of dimensions and needs an even head size, got 3"),
    ]
    for mutate, expected in cases:
        entries = raw_entries(tmp_path / "m.dat")
        mutate(entries)
        write_raw(tmp_path / "bad.dat", entries)
        assert expected in load_error(tmp_path / "bad.dat")


# ------------------------------------------------------------------------------------ commands

@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEMTOGPT_CACHE_DIR", str(tmp_path / "cache"))
    Path("d.txt").write_text(TEXT)
    return tmp_path


def init(pos_enc, path="model.dat", T=8, E=16, H=2, ok=True):
    return run("init", "--model", path, "--positional-encoding", pos_enc, "--num-tokens", T, "--embedding-degree",
               E, "--num-layers", 2, "--num-heads", H, "--seed", 1, ok=ok)


@pytest.mark.parametrize("pos_enc", NEW)
def test_cli_init_info_train_and_infer(workdir, pos_enc):
    out = init(pos_enc).output
    count = hp(pos_enc, vocab_size=101, num_tokens=8, embedding_degree=16).num_params()
    assert f"Successfully initialized a model with {count:,} parameters" in out
    info = json.loads(run("info", "--json").output)
    assert info["hyperparameters"]["pos_enc"] == pos_enc and info["num_params"] == count
    assert f"positional encoding {pos_enc}" in run("info").output
    run("train", "--dataset", "d.txt", "--steps", 3, "--batch-size", 2)
    assert load("model.dat").step == 3
    assert run("infer", "--count", 5, "--seed", 1, "ab").exit_code == 0


def test_cli_init_refuses_an_odd_head_size_for_rotary(workdir):
    result = init("rotary", E=12, H=4, ok=False)  # head size 3
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "even head size" in lines[0] and "12 / 4 = 3" in lines[0]
    assert not Path("model.dat").exists()
    init("learned", E=12, H=4)  # an odd head size is fine without rotary


@pytest.mark.parametrize("pos_enc", NEW)
def test_insert_layer_keeps_the_function_and_the_table(workdir, pos_enc):
    init(pos_enc)
    run("train", "--dataset", "d.txt", "--steps", 3, "--batch-size", 2)
    s = load("model.dat")
    ids = s.tokenizer.encode(TEXT)[:16].reshape(2, 8)
    run("insert-layer", "--input", "model.dat", "--output", "grown.dat", "--insert-at", 1, "--seed", 2)
    grown = load("grown.dat")
    assert grown.hp.num_layers == 3 and grown.hp.pos_enc == pos_enc
    before = s.model.logits(ids)
    assert np.abs(grown.model.logits(ids) - before).max() < 1e-3 * np.abs(before).max()
    if pos_enc == "learned":
        a, b = s.model.params.named()["pos_embedding"], grown.model.params.named()["pos_embedding"]
        assert a.tobytes() == b.tobytes()
    grown_lib, _ = insert_layer(s, 2, seed=3)  # the library, with the optimizer moved along
    assert grown_lib.model.params.size == grown_lib.hp.num_params()


@pytest.mark.parametrize("T_child", [5, 8, 12])
def test_init_with_copies_the_first_rows_of_a_learned_table(workdir, T_child):
    init("learned")
    run("train", "--dataset", "d.txt", "--steps", 2, "--batch-size", 2)
    out = run("init-with", "--parent", "model.dat", "--child", "child.dat", "--tokenizer", "char",
              "--tokenizer-data", "d.txt", "--num-tokens", T_child, "--seed", 4).output
    parent, child = load("model.dat"), load("child.dat")
    src, dst = parent.model.params.named()["pos_embedding"], child.model.params.named()["pos_embedding"]
    k = min(8, T_child)
    assert dst.shape == (T_child, 16) and dst[:k].tobytes() == src[:k].tobytes()
    if T_child == 8:
        assert "pos_embedding" in out and "rows" not in out
    else:
        assert f"pos_embedding rows 0..{k - 1} (the parent's context is 8, the child's {T_child})" in out
    if T_child > 8:  # the rest is the child's own seeded draw
        assert f"Fresh: token_embedding, head_map_weights, head_map_bias, pos_embedding rows 8..{T_child - 1}" in out
        fresh = create(child.hp, child.tokenizer, seed=4).model.params.named()["pos_embedding"]
        assert dst[8:].tobytes() == fresh[8:].tobytes()
    # the library says the same, and counts every parameter once
    lib_child, report = init_with(parent, child.tokenizer, num_tokens=T_child, seed=4)
    assert report.copied_params + report.fresh_params == lib_child.hp.num_params()


@pytest.mark.parametrize("pos_enc", NEW)
def test_compare_and_export(workdir, pos_enc):
    init(pos_enc)
    Path("trained.dat").write_bytes(Path("model.dat").read_bytes())
    run("train", "--model", "trained.dat", "--dataset", "d.txt", "--steps", 3, "--batch-size", 2)
    cmp = json.loads(run("compare", "model.dat", "trained.dat", "--json", "--limit", 0).output)
    assert cmp["lineage"]["relation"] == "a_parent_of_b" and not cmp["shape_mismatch"]
    names = {e["name"] for e in cmp["tensors"]}
    assert ("pos_embedding" in names) == (pos_enc == "learned") and "proj_1_weights" in names
    out = run("export", "--model", "trained.dat", "--out", "w.npz").output
    assert "w.npz" in out
    z = np.load("w.npz")
    named = load("trained.dat").model.params.named()
    assert set(z.files) - {"__metadata__"} == set(named)
    for name, view in named.items():
        np.testing.assert_array_equal(z[name], view)
    meta = json.loads(str(z["__metadata__"]))
    assert json.loads(meta["hyperparameters"])["pos_enc"] == pos_enc
    assert ("rotary" in meta) == (pos_enc == "rotary")
    if pos_enc == "rotary":
        assert json.loads(meta["rotary"])["base"] == 10000.0
