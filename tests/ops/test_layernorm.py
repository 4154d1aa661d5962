import numpy as np
import pytest

from femtogpt.engine.ops.dropout import keep_scale  # noqa: F401  (compiled via the fused kernel)
from femtogpt.engine.ops.layernorm import LayerNorm, ResidualLayerNorm
from tests.gradcheck import check_op


def reference_layernorm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_layernorm_forward_matches_numpy():
    rng = np.random.default_rng(1)
    x, g, b = rng.standard_normal((130, 7)), rng.standard_normal(7), rng.standard_normal(7)
    for dt in (np.float32, np.float64):
        out = LayerNorm().forward(x.astype(dt), g.astype(dt), b.astype(dt))
        assert out.dtype == dt
        np.testing.assert_allclose(out, reference_layernorm(x, g, b), rtol=1e-4, atol=1e-5)


def test_layernorm_gradcheck():
    rng = np.random.default_rng(2)
    # 70 rows: more than one row chunk, so the chunked gain/bias sums are exercised
    x, g, b = rng.standard_normal((70, 5)), rng.standard_normal(5), rng.standard_normal(5)
    check_op(LayerNorm, [x, g, b], diff=[0, 1, 2])


def test_constant_row_is_finite():
    out = LayerNorm().forward(np.full((2, 4), 3.0), np.ones(4), np.zeros(4))
    assert np.all(out == 0.0)


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_residual_layernorm_forward_and_gradcheck(p):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((70, 6)), rng.standard_normal((70, 6))
    bias, g, beta = rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal(6)
    out = ResidualLayerNorm().forward(a, b, bias, g, beta, p=p, key=7)
    if p == 0.0:
        np.testing.assert_allclose(out, reference_layernorm(a + b + bias, g, beta), atol=1e-10)
    else:
        fn = ResidualLayerNorm()
        fn.forward(a, b, bias, g, beta, p=p, key=7)
        dropped = fn.resid - a  # (b + bias) * mask / (1 - p)
        kept = dropped != 0
        assert 0.5 < kept.mean() < 0.9
        np.testing.assert_allclose(dropped[kept], ((b + bias) / (1 - p))[kept], atol=1e-12)
        np.testing.assert_allclose(out, reference_layernorm(fn.resid, g, beta), atol=1e-10)
    check_op(ResidualLayerNorm, [a, b, bias, g, beta], diff=[0, 1, 2, 3, 4], p=p, key=7)
