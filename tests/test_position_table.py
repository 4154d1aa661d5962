"""The sinusoid table in the engine's precision (issue 13).

float32: computed in float32 as the reference does, bit for bit as before. float64: computed in
float64, so float64 checks with absolute positions are no longer capped by a float32 table (~1e-7):
the table matches the formula to 1e-13, and the engine's float64 gradient matches central differences
of a plain-NumPy float64 forward with the exact table at atol 5e-9, where the whole-model gradcheck
allows 1e-7 (errors ~1e-9 now; ~2e-8 with the float32 table the float64 engine used before).
"""
import math
import types

import numpy as np

from femtogpt.engine.autograd import Graph
from femtogpt.model.gpt import sinusoidal_table
from tests.gradcheck import numeric_grad
from tests.models import make_test_model
from tests.test_trace import reference_forward


def formula(T, E):
    return np.array([[math.sin(k / 10000 ** (2 * (c // 2) / E)) if c % 2 == 0 else
                      math.cos(k / 10000 ** (2 * (c // 2) / E)) for c in range(E)] for k in range(T)])


def float32_table(T, E):
    # the computation as it was (and still is for float32): every operation in float32
    k = np.arange(T, dtype=np.float32)[:, None]
    i = (np.arange(E) // 2).astype(np.float32)[None, :]
    angle = k / np.power(np.float32(10000.0), np.float32(2.0) * i / np.float32(E))
    return np.where(np.arange(E)[None, :] % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)


def test_float32_table_is_bitwise_as_before():
    for T, E in [(80, 80), (16, 32), (5, 6), (3, 7), (1024, 768)]:
        table = sinusoidal_table(T, E, np.float32)
        assert table.dtype == np.float32 and table.tobytes() == float32_table(T, E).tobytes()


def test_float64_table_is_the_formula_in_float64():
    for T, E in [(80, 80), (16, 32), (5, 6)]:
        table = sinusoidal_table(T, E, np.float64)
        assert table.dtype == np.float64
        assert np.abs(table - formula(T, E)).max() < 1e-13
        assert np.abs(float32_table(T, E) - formula(T, E)).max() > 1e-8  # what the float64 engine added before


def gradient_errors(pe):
    """Max |engine gradient - central differences of a NumPy float64 forward with the exact table|, over
    every parameter of a 1-layer float64 model whose position table is `pe`."""
    T = len(pe)
    model = make_test_model(np.float64, num_layers=1, num_tokens=T, pos_enc="absolute")
    model.pe = pe
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 11, (2, T)), rng.integers(0, 11, (2, T))
    spec = types.SimpleNamespace(params=model.params, hp=model.hp, pe=formula(T, model.hp.embedding_degree))
    w = model.params.values.views

    def reference_loss():
        logits = reference_forward(spec, ids)["normed"][-1] @ w["head_map_weights"] + w["head_map_bias"]
        logits = logits - logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return float(-np.take_along_axis(logp, targets[..., None], -1).mean())

    model.params.grad.fill(0)
    g = Graph()
    g.backward(model.loss(g, ids, targets))
    grads = model.params.named_grads()
    return {name: float(np.abs(grads[name] - numeric_grad(reference_loss, view)).max())
            for name, view in model.params.named().items()}


def test_float64_gradcheck_with_absolute_positions_at_a_tighter_tolerance():
    T, E = 6, 8
    errors = gradient_errors(sinusoidal_table(T, E, np.float64))  # what GPT builds for float64
    print("\n".join(f"{name:28s} {err:.2e}" for name, err in errors.items()))
    assert max(errors.values()) < 5e-9
    # the float32 table the float64 engine used before does not pass it
    assert max(gradient_errors(float32_table(T, E).astype(np.float64)).values()) > 1e-8
