import numpy as np
import pytest

from femtogpt.engine.ops.attention import CausalSelfAttention
from tests.gradcheck import check_op


def reference_attention(qkv, B, T, NH):
    # the spec, head by head, in plain NumPy (no dropout)
    C = qkv.shape[1] // 3
    hs = C // NH
    x = qkv.reshape(B, T, 3, NH, hs)
    q, k, v = x[:, :, 0], x[:, :, 1], x[:, :, 2]  # (B, T, NH, hs)
    out = np.zeros((B, T, NH, hs))
    for b in range(B):
        for h in range(NH):
            s = q[b, :, h] @ k[b, :, h].T * hs**-0.5
            s[np.triu(np.ones((T, T), bool), 1)] = -np.inf
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            out[b, :, h] = p @ v[b, :, h]
    return out.reshape(B * T, C)


def test_attention_forward_matches_numpy():
    rng = np.random.default_rng(0)
    B, T, NH, hs = 3, 7, 2, 4
    qkv = rng.standard_normal((B * T, 3 * NH * hs))
    for dt, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        out = CausalSelfAttention(T, NH).forward(qkv.astype(dt))
        assert out.dtype == dt
        np.testing.assert_allclose(out, reference_attention(qkv, B, T, NH), atol=tol)


def test_attention_is_causal():
    rng = np.random.default_rng(1)
    B, T, NH, hs = 1, 6, 2, 3
    qkv = rng.standard_normal((B * T, 3 * NH * hs))
    out1 = CausalSelfAttention(T, NH).forward(qkv).copy()
    qkv[4:] += 10.0  # changing later positions leaves earlier outputs alone
    out2 = CausalSelfAttention(T, NH).forward(qkv)
    np.testing.assert_array_equal(out1[:4], out2[:4])
    assert not np.allclose(out1[4:], out2[4:])


@pytest.mark.parametrize("p", [0.0, 0.25])
def test_attention_gradcheck(p):
    rng = np.random.default_rng(2)
    B, T, NH, hs = 2, 3, 2, 2
    qkv = rng.standard_normal((B * T, 3 * NH * hs))
    check_op(lambda: CausalSelfAttention(T, NH), [qkv], diff=[0], p=p, key=11)


def test_attention_dropout_drops_probabilities():
    rng = np.random.default_rng(3)
    B, T, NH, hs = 2, 16, 2, 4
    qkv = rng.standard_normal((B * T, 3 * NH * hs))
    plain = CausalSelfAttention(T, NH).forward(qkv).copy()
    dropped = CausalSelfAttention(T, NH).forward(qkv, p=0.5, key=5)
    assert not np.allclose(plain, dropped)
    again = CausalSelfAttention(T, NH).forward(qkv, p=0.5, key=5)
    np.testing.assert_array_equal(dropped, again)  # the mask is a function of the key
