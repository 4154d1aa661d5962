"""forward_trace: the hidden states and attention of every layer, from the one definition of the block,
checked against a plain-NumPy forward written from the reference's equations (the spec)."""
import numpy as np
import pytest

from tests.models import make_test_model


def layernorm(x, g, b, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * g + b


def gelu(u):
    return 0.5 * u * (1 + np.tanh(0.7978845608028654 * (u + 0.044715 * u**3)))


def reference_forward(model, ids):
    """{name: per-layer list} of the reference's intermediate values, (B, T, ...) each."""
    w, hp = model.params.values.views, model.hp
    B, T = ids.shape
    C, NH, L = hp.embedding_degree, hp.num_heads, hp.num_layers
    hs = C // NH
    out = {k: [] for k in ("resid", "normed", "attn", "mid", "ffn", "probs")}
    x = w["token_embedding"][ids] + (model.pe[:T] if model.pe.shape[0] else 0.0)
    n = layernorm(x, w["norm_0_coeff"], w["norm_0_bias"])
    out["resid"].append(x), out["normed"].append(n)
    for l in range(L):
        q, k, v = (n @ w[f"qkv_{l}"]).reshape(B, T, 3, NH, hs).transpose(2, 0, 3, 1, 4)  # (B, NH, T, hs)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)
        s[..., np.triu(np.ones((T, T), bool), 1)] = -np.inf
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        o = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        a = o @ w[f"proj_{l}_weights"] + w[f"proj_{l}_bias"]
        m = layernorm(n + a, w[f"atten_norm_{l}_coeff"], w[f"atten_norm_{l}_bias"])
        f = gelu(m @ w[f"feedforward1_{l}_weights"] + w[f"feedforward1_{l}_bias"]) @ w[f"feedforward2_{l}_weights"]
        f = f + w[f"feedforward2_{l}_bias"]
        x = m + f
        nxt = f"norm_{l + 1}" if l + 1 < L else "head_norm"
        n = layernorm(x, w[f"{nxt}_coeff"], w[f"{nxt}_bias"])
        for name, value in (("probs", p), ("attn", a), ("mid", m), ("ffn", f), ("resid", x), ("normed", n)):
            out[name].append(value)
    return out


@pytest.mark.parametrize("pos_enc", ["none", "absolute"])
def test_trace_matches_a_numpy_forward_layer_by_layer(pos_enc):
    model = make_test_model(np.float64, num_layers=3, num_tokens=6, pos_enc=pos_enc)
    ids = np.random.default_rng(0).integers(0, 11, (2, 6))
    trace = model.forward_trace(ids, attention=True)
    ref = reference_forward(model, ids)
    L, (B, T), C = 3, ids.shape, model.hp.embedding_degree
    shapes = {"resid": (L + 1, B, T, C), "normed": (L + 1, B, T, C), "attn": (L, B, T, C),
              "mid": (L, B, T, C), "ffn": (L, B, T, C), "probs": (L, B, model.hp.num_heads, T, T)}
    for name, shape in shapes.items():
        got = getattr(trace, name)
        assert got.shape == shape, name
        np.testing.assert_allclose(got, np.stack(ref[name]), rtol=0, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_final_hidden_state_gives_exactly_the_logits(dtype):
    model = make_test_model(dtype, num_layers=2, num_tokens=5)
    ids = np.random.default_rng(1).integers(0, 11, (3, 5))
    trace = model.forward_trace(ids)
    assert trace.probs is None and trace.normed.dtype == dtype
    np.testing.assert_array_equal(model.head(trace.normed[-1]), model.logits(ids))
    np.testing.assert_allclose(trace.resid[1:], trace.mid + trace.ffn, rtol=0,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_attention_rows_sum_to_one_and_are_causal():
    model = make_test_model(np.float32, num_layers=2, num_tokens=7, num_heads=2)
    ids = np.random.default_rng(2).integers(0, 11, (2, 7))
    probs = model.forward_trace(ids, attention=True).probs
    assert probs.shape == (2, 2, 2, 7, 7)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    assert np.all(probs[..., np.triu(np.ones((7, 7), bool), 1)] == 0.0)
    assert np.all(probs[..., np.tril(np.ones((7, 7), bool))] > 0.0)
    # changing a later token leaves every earlier position's states alone
    later = ids.copy()
    later[:, 5] = (later[:, 5] + 1) % 11
    a, b = model.forward_trace(ids), model.forward_trace(later)
    np.testing.assert_array_equal(a.resid[:, :, :5], b.resid[:, :, :5])
    assert not np.allclose(a.resid[:, :, 5], b.resid[:, :, 5])


def test_tracing_leaves_training_unchanged():
    model = make_test_model(np.float64, num_layers=2)
    rng = np.random.default_rng(3)
    ids, targets = rng.integers(0, 11, (2, 4)), rng.integers(0, 11, (2, 4))
    before = model.loss_and_grad(ids, targets, dropout=0.1, key=2), model.params.grad.copy()
    model.forward_trace(ids, attention=True)
    after = model.loss_and_grad(ids, targets, dropout=0.1, key=2), model.params.grad
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
