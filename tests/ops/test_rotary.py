"""Rotary (RoPE): a plain-NumPy spec forward, the float64 gradcheck, relative positions, the inverse,
an offset start position (the KV cache's use), and thread-count independence."""
import numba
import numpy as np
import pytest

from femtogpt.engine.ops.rotary import Rotary, rope_tables, rotary_backward, rotary_forward
from tests.gradcheck import check_op

rng = np.random.default_rng(0)


def spec_rotary(qkv, T, NH, hs, p0=0, base=10000.0):
    """RoPE written from the formula: pairs (2i, 2i+1) of each head of Q and K turned by
    t * base^(-2i/hs), t = p0 + r % T; V unchanged."""
    out = qkv.astype(np.float64).copy()
    W = NH * hs
    for r in range(qkv.shape[0]):
        t = p0 + r % T
        for block in (0, W):
            for h in range(NH):
                for i in range(hs // 2):
                    a = t * base ** (-2 * i / hs)
                    j = block + h * hs + 2 * i
                    x0, x1 = qkv[r, j], qkv[r, j + 1]
                    out[r, j] = x0 * np.cos(a) - x1 * np.sin(a)
                    out[r, j + 1] = x0 * np.sin(a) + x1 * np.cos(a)
    return out


@pytest.mark.parametrize("B,T,NH,hs", [(2, 3, 2, 4), (1, 5, 3, 2), (3, 4, 1, 6)])
def test_forward_matches_the_formula_and_gradcheck(B, T, NH, hs):
    qkv = rng.standard_normal((B * T, 3 * NH * hs))
    cos, sin = rope_tables(T + 2, hs, np.float64)  # tables may be longer than the batch's T
    out = Rotary(T).forward(qkv, cos, sin)
    np.testing.assert_allclose(out, spec_rotary(qkv, T, NH, hs), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out[:, 2 * NH * hs:], qkv[:, 2 * NH * hs:])  # V untouched
    np.testing.assert_array_equal(out[::T], qkv[::T])                          # position 0: identity
    check_op(lambda: Rotary(T), [qkv, cos, sin], diff=[0])


def test_scores_depend_on_the_relative_position_only():
    hs = 8
    cos, sin = rope_tables(12, hs, np.float64)
    q, k = rng.standard_normal(hs), rng.standard_normal(hs)

    def score(t, s):  # q at position t against k at position s
        rows = np.zeros((12, 3 * hs))
        rows[t, :hs], rows[s, hs:2 * hs] = q, k
        out = Rotary(12).forward(rows, cos, sin)
        return out[t, :hs] @ out[s, hs:2 * hs]

    assert score(5, 2) == pytest.approx(score(9, 6), abs=1e-12) == pytest.approx(score(3, 0), abs=1e-12)
    assert abs(score(5, 2) - score(5, 4)) > 1e-3  # and the relative position does matter


def test_backward_is_the_inverse_rotation():
    qkv = rng.standard_normal((8, 24))
    cos, sin = rope_tables(4, 4, np.float64)
    turned, back = np.empty_like(qkv), np.empty_like(qkv)
    rotary_forward(turned, qkv, cos, sin, 4, 0)
    rotary_backward(back, turned, cos, sin, 4, 0)
    np.testing.assert_allclose(back, qkv, rtol=0, atol=1e-13)


def test_an_offset_start_is_the_same_rows_of_a_longer_sequence():
    # the KV cache turns n new rows at window positions p0..p0+n-1
    T, hs, NH = 7, 4, 2
    cos, sin = rope_tables(T, hs, np.float32)
    qkv = rng.standard_normal((T, 3 * NH * hs)).astype(np.float32)
    whole = Rotary(T).forward(qkv, cos, sin)
    part = np.empty_like(qkv[3:])
    rotary_forward(part, np.ascontiguousarray(qkv[3:]), cos, sin, T - 3, 3)
    np.testing.assert_array_equal(part, whole[3:])
    assert part.dtype == np.float32


def test_odd_head_size_and_misfit_shapes_are_refused():
    with pytest.raises(ValueError, match="even head size"):
        rope_tables(4, 3)
    cos, sin = rope_tables(4, 4, np.float64)
    with pytest.raises(ValueError, match="rotary"):
        Rotary(4).forward(np.zeros((8, 3 * 6)), cos, sin)   # a width of 6 is not whole heads of 4
    with pytest.raises(ValueError, match="rotary"):
        Rotary(8).forward(np.zeros((8, 24)), cos, sin)      # tables shorter than T


def test_results_do_not_depend_on_threads():
    qkv = rng.standard_normal((64 * 5, 3 * 4 * 8)).astype(np.float32)
    cos, sin = rope_tables(64, 8, np.float32)
    results = []
    threads = numba.get_num_threads()
    for n in (1, threads):
        numba.set_num_threads(n)
        try:
            fn = Rotary(64)
            out = fn.forward(qkv, cos, sin).copy()
            results.append((out, fn.backward(out)[0].copy()))
        finally:
            numba.set_num_threads(threads)
    for a, b in zip(results[0], results[1]):
        np.testing.assert_array_equal(a, b)
