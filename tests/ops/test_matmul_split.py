"""The thread split of matrix products: same bits for any thread count, and products that are cut
really are cut (so the test exercises the pool)."""
import numba
import numpy as np
import pytest

from femtogpt.engine.ops import matmul
from femtogpt.engine.ops.matmul import batched_gemm, gemm
from femtogpt.engine.runtime import engine_threads


def _with_threads(n, fn):
    with engine_threads(n):
        return fn()


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_gemm_gives_the_same_bits_for_any_thread_count(monkeypatch):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 512), dtype=np.float32)
    b = rng.standard_normal((512, 520), dtype=np.float32)
    calls = []
    real = np.matmul
    monkeypatch.setattr(matmul.np, "matmul", lambda x, y, out: (calls.append(x.shape), real(x, y, out=out))[1])
    outs = [_with_threads(n, lambda: gemm(a, b, np.empty((1024, 520), np.float32))) for n in (1, 2)]
    assert calls == [(512, 512)] * 4  # cut in two by shape, with one thread and with two
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[0], a @ b, rtol=1e-5, atol=1e-4)


def test_small_products_are_one_call(monkeypatch):
    # cutting a weight gradient x.T @ dout of the tiny config into row blocks made it 75% slower
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1024, 64), dtype=np.float32)
    d = rng.standard_normal((1024, 256), dtype=np.float32)
    w = rng.standard_normal((64, 256), dtype=np.float32)
    calls = []
    real = np.matmul
    monkeypatch.setattr(matmul.np, "matmul", lambda a, b, out: (calls.append(a.shape), real(a, b, out=out))[1])
    for threads in (1, 2):
        _with_threads(threads, lambda: gemm(x.T, d, np.empty((64, 256), np.float32)))
        _with_threads(threads, lambda: gemm(x, w, np.empty((1024, 256), np.float32)))
    assert calls == [(64, 1024), (1024, 64)] * 2


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_batched_gemm_on_strided_views_is_the_same_for_any_thread_count():
    rng = np.random.default_rng(2)
    qkv = rng.standard_normal((32 * 64, 3 * 64), dtype=np.float32)
    heads = qkv.reshape(32, 64, 3, 4, 16)
    q, k = heads[:, :, 0].transpose(0, 2, 1, 3), heads[:, :, 1].transpose(0, 2, 1, 3)
    outs = [_with_threads(n, lambda: batched_gemm(q, k.transpose(0, 1, 3, 2), np.empty((32, 4, 64, 64), np.float32)))
            for n in (1, 2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[0], np.einsum("bhid,bhjd->bhij", q, k), rtol=1e-5, atol=1e-4)
