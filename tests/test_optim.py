"""AdamW and the learning-rate schedule against the reference's formulas (§3.1)."""
import numpy as np
import pytest

from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.engine.optim import AdamW
from femtogpt.engine.params import Parameters


def reference_adamw(p, g, m, v, lr, step, b1=0.9, b2=0.999, eps=1e-8, wd=0.01):
    p = p - lr * wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mhat, vhat = m / (1 - b1 ** (step + 1)), v / (1 - b2 ** (step + 1))
    return p - mhat * lr / (np.sqrt(vhat) + eps), m, v


def test_adamw_matches_reference_over_steps():
    hp = Hyperparameters(vocab_size=5, num_tokens=2, embedding_degree=4, num_layers=1, num_heads=2)
    params = Parameters(hp, np.float64).init_reference(0)
    opt = AdamW(params, OptimizerConfig())
    rng = np.random.default_rng(0)
    p, m, v = params.data.copy(), np.zeros(params.size), np.zeros(params.size)
    for step in range(5):
        g = rng.standard_normal(params.size)
        params.grad[...] = g
        lr = opt.update(lr=1e-2)
        p, m, v = reference_adamw(p, g, m, v, 1e-2, step)
        assert lr == 1e-2
    np.testing.assert_allclose(params.data, p, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(opt.m, m, rtol=1e-12)
    assert opt.step == 5


@pytest.mark.parametrize("step,lr", [(0, 0.0), (1, 1e-5), (99, 9.9e-4), (100, 1e-3),
                                     (1000, 9.8218e-4), (10000, 8.0398e-4), (25100, 5.05e-4),
                                     (50100, 1e-5), (10**6, 1e-5)])
def test_learning_rate_schedule_reference_values(step, lr):
    assert OptimizerConfig().learning_rate(step) == pytest.approx(lr, rel=1e-9, abs=1e-12)


def test_schedule_parameters_can_change():
    c = OptimizerConfig(lr=2e-3, min_lr=1e-4, warmup=10, decay_steps=100)
    assert c.learning_rate(5) == pytest.approx(1e-3)
    assert c.learning_rate(10) == pytest.approx(2e-3)
    assert c.learning_rate(500) == pytest.approx(1e-4)
