"""Embedding, MatMul, BiasGelu, CrossEntropy: spec forward in NumPy + float64 gradcheck."""
import numpy as np
import pytest

from femtogpt.engine.ops.cross_entropy import CrossEntropy
from femtogpt.engine.ops.embedding import Embedding
from femtogpt.engine.ops.gelu import BiasGelu
from femtogpt.engine.ops.matmul import MatMul
from tests.gradcheck import check_op

rng = np.random.default_rng(0)


def gelu_tanh(u):
    return 0.5 * u * (1 + np.tanh(0.7978845608 * (u + 0.044715 * u**3)))


def test_embedding_forward_and_gradcheck():
    ids = np.array([[1, 4, 1], [0, 4, 4]])
    table, pe = rng.standard_normal((5, 20)), rng.standard_normal((3, 20))
    out = Embedding().forward(ids, table, pe)
    np.testing.assert_array_equal(out, (table[ids] + pe).reshape(6, 20))
    out = Embedding().forward(ids, table, np.zeros((0, 20)))
    np.testing.assert_array_equal(out, table[ids].reshape(6, 20))
    check_op(Embedding, [ids, table, pe], diff=[1])  # repeated ids accumulate


def test_embedding_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="token id"):
        Embedding().forward(np.array([[5]]), np.zeros((5, 2)), np.zeros((0, 2)))


@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul_forward_and_gradcheck(with_bias):
    x, w, b = rng.standard_normal((70, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    inputs = [x, w, b] if with_bias else [x, w]
    out = MatMul().forward(*inputs)
    np.testing.assert_allclose(out, x @ w + (b if with_bias else 0), atol=1e-12)
    check_op(MatMul, inputs, diff=list(range(len(inputs))))


def test_bias_gelu_forward_and_gradcheck():
    h, b = rng.standard_normal((70, 5)) * 2, rng.standard_normal(5)
    np.testing.assert_allclose(BiasGelu().forward(h, b), gelu_tanh(h + b), atol=1e-9)
    check_op(BiasGelu, [h, b], diff=[0, 1])


def test_cross_entropy_forward_and_gradcheck():
    logits, bias = rng.standard_normal((70, 6)), rng.standard_normal(6)
    targets = rng.integers(0, 6, 70)
    z = logits + bias
    lse = np.log(np.exp(z).sum(-1))
    expected = (lse - z[np.arange(70), targets]).mean()
    np.testing.assert_allclose(CrossEntropy().forward(logits, bias, targets), expected, rtol=1e-12)
    check_op(CrossEntropy, [logits, bias, targets], diff=[0, 1])


def test_cross_entropy_large_logits_do_not_overflow():
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0]], dtype=np.float32)
    loss = CrossEntropy().forward(logits, np.zeros(2, np.float32), np.array([0, 0]))
    assert np.isfinite(loss) and abs(loss - 500.0) < 1e-3


def test_cross_entropy_ignores_negative_targets():
    logits, bias = rng.standard_normal((4, 3)), np.zeros(3)
    full = CrossEntropy().forward(logits[:2], bias, np.array([1, 2]))
    padded = CrossEntropy().forward(logits, bias, np.array([1, 2, -1, -1]))
    np.testing.assert_allclose(padded, full, rtol=1e-12)


def test_bias_gelu_float32_fast_path_matches_exact():
    h = np.linspace(-12, 12, 4001).reshape(1, -1)
    b = np.zeros(h.shape[1])
    exact = gelu_tanh(h)
    fast = BiasGelu().forward(h.astype(np.float32), b.astype(np.float32))
    np.testing.assert_allclose(fast, exact, atol=2e-6, rtol=1e-5)
    fn = BiasGelu()
    fn.forward(h.astype(np.float32), b.astype(np.float32))
    d32 = fn.backward(np.ones_like(h, dtype=np.float32))[0].copy()
    fn64 = BiasGelu()
    fn64.forward(h, b)
    np.testing.assert_allclose(d32, fn64.backward(np.ones_like(h))[0], atol=5e-6)
