"""Generation: the KV-cached forward against model.logits (every position, prefill, sliding), greedy
generation against a naive full-forward loop, and the sampler's documented order on hand-made logits:
logits / temperature -> top-k -> top-p -> sample."""
import numba
import numpy as np
import pytest

from femtogpt.model.generate import generate
from femtogpt.model.kv_cache import Generator
from femtogpt.model.sampling import sample_next
from tests.models import make_test_model

V, T = 13, 6
TOL = {np.float64: 1e-10, np.float32: 1e-4}


def make_model(dtype=np.float64, pos_enc="absolute", seed=0, **kw):
    return make_test_model(dtype, seed, **{"vocab_size": V, "num_tokens": T, "num_layers": 2,
                                           "pos_enc": pos_enc, **kw})


def full_last(model, window):
    return model.logits(np.array([window]))[0, -1]


def naive_greedy(model, prompt, count, keep=None, start_id=0):
    """A full forward on the whole window for every token, with Generator's window policy."""
    keep = max(1, T // 2) if keep is None else keep
    window, out = list(prompt)[-T:] or [start_id], []
    for _ in range(count):
        nxt = int(np.argmax(full_last(model, window)))
        out.append(nxt)
        window = window + [nxt]
        if len(window) > T:
            window = window[-keep:]
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pos_enc", ["absolute", "none"])
def test_incremental_logits_equal_full_forward_at_every_position(dtype, pos_enc):
    model = make_model(dtype, pos_enc)
    ids = np.random.default_rng(1).integers(0, V, T)
    full = model.logits(ids[None])[0]                          # (T, V)
    assert np.abs(full).max() > 0.5                            # not a trivially ~0 model
    gen = Generator(model)
    for t in range(T):
        logits = gen.feed([ids[t]])
        assert logits.shape == (V,) and logits.dtype == dtype
        assert gen.cache.length == t + 1
        np.testing.assert_allclose(logits, full[t], rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("pos_enc", ["absolute", "none"])
def test_prefill_equals_token_by_token_and_continues(pos_enc):
    model = make_model(np.float64, pos_enc)
    ids = np.random.default_rng(2).integers(0, V, T)
    one_by_one = Generator(model)
    for t in ids:
        last = one_by_one.feed([t])
    batched = Generator(model)
    np.testing.assert_allclose(batched.feed(ids), last, rtol=0, atol=1e-12)
    np.testing.assert_allclose(batched.cache.k, one_by_one.cache.k, rtol=0, atol=1e-12)
    np.testing.assert_allclose(batched.cache.v, one_by_one.cache.v, rtol=0, atol=1e-12)
    # a partial prefill then single tokens
    gen = Generator(model)
    gen.feed(ids[:3])
    for t in range(3, T):
        np.testing.assert_allclose(gen.feed([ids[t]]), full_last(model, ids[:t + 1]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("keep", [None, 1, T - 1, T])
@pytest.mark.parametrize("pos_enc", ["absolute", "none"])
def test_sliding_window_logits_equal_a_fresh_forward_on_the_window(keep, pos_enc):
    model = make_model(np.float64, pos_enc)
    gen = Generator(model, keep=keep)
    k = gen.keep
    ids = np.random.default_rng(3).integers(0, V, 4 * T)
    expected_window = []
    for t in ids:
        logits = gen.feed([t])
        expected_window.append(int(t))
        if len(expected_window) > T:
            expected_window = expected_window[-k:]
        assert gen.tokens == expected_window
        np.testing.assert_allclose(logits, full_last(model, gen.tokens), rtol=0, atol=1e-10)


def test_keep_T_slides_by_one_like_the_reference():
    model = make_model(np.float64)
    gen = Generator(model, keep=T)
    ids = list(np.random.default_rng(4).integers(0, V, 3 * T))
    for i, t in enumerate(ids):
        logits = gen.feed([t])
        assert gen.tokens == ids[max(0, i + 1 - T):i + 1]
        np.testing.assert_allclose(logits, full_last(model, ids[max(0, i + 1 - T):i + 1]), atol=1e-10)


@pytest.mark.parametrize("keep", [None, T])
@pytest.mark.parametrize("pos_enc", ["absolute", "none"])
def test_greedy_generation_equals_a_naive_full_forward_loop(keep, pos_enc):
    model = make_model(np.float64, pos_enc)
    prompt = [3, 1, 4]
    got = generate(model, prompt, 4 * T, temperature=0, keep=keep)
    assert got == naive_greedy(model, prompt, 4 * T, keep)
    assert len(set(got)) > 1                                   # the test model is not degenerate


def test_generation_uses_the_cache_not_full_forwards(monkeypatch):
    model = make_model(np.float32)
    expected = naive_greedy(model, [1, 2], 3 * T)

    def no_full_forward(ids):
        raise AssertionError("generate() ran a full forward")
    monkeypatch.setattr(model, "logits", no_full_forward)
    assert generate(model, [1, 2], 3 * T, temperature=0) == expected


def test_prompt_longer_than_T_keeps_its_last_T_tokens():
    model = make_model(np.float64)
    prompt = list(np.random.default_rng(5).integers(0, V, 2 * T + 1))
    assert (generate(model, prompt, 2 * T, temperature=0)
            == generate(model, prompt[-T:], 2 * T, temperature=0)
            == naive_greedy(model, prompt[-T:], 2 * T))
    gen = Generator(model)
    np.testing.assert_allclose(gen.feed(prompt), full_last(model, prompt[-T:]), atol=1e-10)
    assert gen.tokens == prompt[-T:]


def test_empty_prompt_starts_from_start_id():
    model = make_model(np.float64)
    for start in (0, 7):
        got = generate(model, [], 2 * T, temperature=0, start_id=start)
        assert len(got) == 2 * T
        assert got == naive_greedy(model, [], 2 * T, start_id=start)
    assert generate(model, [], 0) == []
    with pytest.raises(ValueError):
        Generator(model).feed([])


def test_streaming_callback_sees_each_token_as_it_is_made():
    model = make_model(np.float32)
    seen = []
    out = generate(model, [1], 10, temperature=0.9, seed=3, on_token=seen.append)
    assert seen == out and len(out) == 10


def test_seeded_sampling_is_reproducible():
    model = make_model(np.float32)
    kw = dict(temperature=1.5, top_k=8, top_p=0.95)
    a = generate(model, [2, 5], 3 * T, seed=11, **kw)
    assert a == generate(model, [2, 5], 3 * T, seed=11, **kw)
    assert any(generate(model, [2, 5], 3 * T, seed=s, **kw) != a for s in (12, 13, 14))


def test_bad_arguments_raise():
    model = make_model(np.float32)
    with pytest.raises(ValueError):
        Generator(model).feed([V])
    with pytest.raises(ValueError):
        Generator(model, keep=T + 1)
    with pytest.raises(ValueError):
        generate(model, [1], -1)


def test_results_do_not_depend_on_threads():
    model = make_model(np.float32)
    ids = np.random.default_rng(6).integers(0, V, T)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = Generator(model).feed(ids)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = Generator(model).feed(ids)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one, many)


# --- the sampler on hand-made logits ---------------------------------------------------------------

def frequencies(logits, n=20000, seed=0, **kw):
    rng = np.random.default_rng(seed)
    draws = np.array([sample_next(logits, rng=rng, **kw) for _ in range(n)])
    return np.bincount(draws, minlength=len(logits)) / n


def test_greedy_is_argmax_with_the_lowest_id_on_ties():
    logits = np.array([0.1, 2.0, -1.0, 2.0, 0.5])
    assert sample_next(logits, temperature=0) == 1
    assert sample_next(logits, temperature=0, top_k=1, top_p=0.1) == 1
    assert sample_next(np.array([3.0, 1.0, 2.0]), temperature=0) == 0


def test_temperature_scales_the_logits():
    logits = np.log(np.array([1.0, 2.0]))                      # p = [1/3, 2/3] at temperature 1
    for t, p1 in [(1.0, 2 / 3), (0.5, 4 / 5), (2.0, np.sqrt(2) / (1 + np.sqrt(2)))]:
        f = frequencies(logits, temperature=t)
        assert abs(f[1] - p1) < 0.015, (t, f)


def test_top_k_keeps_exactly_k_and_breaks_ties_towards_lower_ids():
    logits = np.array([0.5, 3.0, 1.0, 2.0, 0.0, 2.5])
    f = frequencies(logits, temperature=1.0, top_k=3)
    assert set(np.flatnonzero(f)) == {1, 3, 5}
    p = np.exp([3.0, 2.0, 2.5]) / np.exp([3.0, 2.0, 2.5]).sum()  # renormalised over the kept
    np.testing.assert_allclose(f[[1, 3, 5]], p, atol=0.015)
    tied = np.array([1.0, 3.0, 3.0, 3.0, 0.0])
    assert set(np.flatnonzero(frequencies(tied, n=3000, top_k=2))) == {1, 2}
    assert set(np.flatnonzero(frequencies(logits, n=3000, top_k=0))) == set(range(6))  # 0 is off
    assert set(np.flatnonzero(frequencies(logits, n=3000, top_k=99))) == set(range(6))


def test_top_p_keeps_the_smallest_set_with_mass_at_least_p():
    logits = np.log(np.array([0.15, 0.5, 0.05, 0.3]))           # sorted: 1 (.5), 3 (.3), 0 (.15), 2 (.05)
    kept = lambda p: set(np.flatnonzero(frequencies(logits, n=4000, top_p=p)))
    assert kept(0.0) == {1}
    assert kept(0.5) == {1}                                     # 0.5 alone reaches 0.5
    assert kept(0.51) == {1, 3}
    assert kept(0.8) == {1, 3}                                  # exactly 0.8, despite rounding
    assert kept(0.81) == {0, 1, 3}
    assert kept(1.0) == {0, 1, 2, 3}
    f = frequencies(logits, top_p=0.8)
    np.testing.assert_allclose(f[[1, 3]], [0.5 / 0.8, 0.3 / 0.8], atol=0.015)
    ties = np.log(np.array([0.25, 0.25, 0.25, 0.25]))
    assert set(np.flatnonzero(frequencies(ties, n=3000, top_p=0.5))) == {0, 1}


def test_order_is_temperature_then_top_k_then_top_p():
    # top-k first: [.4, .3] renormalised is [.57, .43], so top-p 0.5 keeps token 0 alone;
    # top-p first would keep {0, 1} (0.4 < 0.5)
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    assert set(np.flatnonzero(frequencies(logits, n=3000, top_k=2, top_p=0.5))) == {0}
    # temperature before top-p: at t = 0.5, p is [.66, .24, .11] and top-p 0.6 keeps token 0 alone;
    # at t = 1, p is [.5, .3, .2] and it keeps {0, 1}
    logits = np.log(np.array([0.5, 0.3, 0.2]))
    assert set(np.flatnonzero(frequencies(logits, n=3000, temperature=0.5, top_p=0.6))) == {0}
    assert set(np.flatnonzero(frequencies(logits, n=3000, temperature=1.0, top_p=0.6))) == {0, 1}


def test_sampler_is_reproducible_and_validates():
    logits = np.random.default_rng(0).standard_normal(50)
    draw = lambda: [sample_next(logits, 0.8, 10, 0.9, rng) for _ in range(100)]
    rng = np.random.default_rng(9)
    a = draw()
    rng = np.random.default_rng(9)
    assert draw() == a
    for kw in (dict(temperature=-1), dict(top_k=-1), dict(top_p=1.5), dict(top_p=-0.1)):
        with pytest.raises(ValueError):
            sample_next(logits, rng=rng, **kw)
    with pytest.raises(ValueError):
        sample_next(np.array([0.0, np.nan]), rng=rng)


def test_generation_and_training_run_the_one_definition_of_the_block(monkeypatch):
    import femtogpt.model.block as block_module

    real, runners = block_module.block, []

    def recording_block(run, l, n, next_norm):
        runners.append(type(run).__name__)
        return real(run, l, n, next_norm)

    monkeypatch.setattr(block_module, "block", recording_block)
    model = make_model(np.float64)  # 2 layers
    Generator(model).feed([1, 2, 3])
    model.logits(np.array([[1, 2, 3]]))
    model.loss_and_grad(np.array([[1, 2, 3]]), np.array([[2, 3, 4]]))
    assert runners == ["_CacheRun"] * 2 + ["TapeRun"] * 4
