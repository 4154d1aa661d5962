"""The whole model: parameter count, a float64 gradcheck of every reference tensor by name,
the initial loss, overfitting one batch, and thread-count independence."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from femtogpt.engine.autograd import Graph
from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.model.gpt import GPT, sinusoidal_table
from femtogpt.engine.optim import AdamW
from femtogpt.engine.params import Parameters, reference_names
from femtogpt.train.step import sample_batch, train_step
from tests.gradcheck import check_model_grads
from tests.models import make_test_model


def make_model(dtype=np.float64, seed=0, **kw):
    return make_test_model(dtype, seed, **kw)


@pytest.mark.parametrize("hp", [
    dict(vocab_size=101, num_tokens=80, embedding_degree=80, num_layers=4, num_heads=4),
    dict(vocab_size=1054, num_tokens=80, embedding_degree=192, num_layers=8, num_heads=8),
    dict(vocab_size=7, num_tokens=3, embedding_degree=6, num_layers=2, num_heads=3),
])
def test_parameter_count_is_the_reference_formula(hp):
    hp = Hyperparameters(**hp)
    V, E, L = hp.vocab_size, hp.embedding_degree, hp.num_layers
    expected = 2 * V * E + V + L * (12 * E * E + 10 * E) + 2 * E
    params = Parameters(hp)
    assert params.size == expected == hp.num_params()
    assert sum(v.size for v in params.named().values()) == expected
    assert len(reference_names(hp)) == 1 + L * (10 + 3 * hp.num_heads) + 4


def test_reference_defaults_count():
    assert Hyperparameters(vocab_size=101).num_params() == 326_821  # the reference's figure


@pytest.mark.parametrize("pos_enc,layers,dropout", [("none", 1, 0.0), ("absolute", 2, 0.0),
                                                    ("none", 2, 0.2)])
def test_whole_model_gradcheck_by_tensor_name(pos_enc, layers, dropout):
    model = make_model(pos_enc=pos_enc, num_layers=layers)
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, 11, (2, 4)), rng.integers(0, 11, (2, 4))

    check_model_grads(model, ids, targets, dropout)


def test_sinusoidal_table_matches_reference_formula():
    T, E = 5, 6
    table = sinusoidal_table(T, E, np.float64)
    for k in range(T):
        for c in range(E):
            factor = 10000 ** (2 * (c // 2) / E)
            expected = math.sin(k / factor) if c % 2 == 0 else math.cos(k / factor)
            assert abs(table[k, c] - expected) < 1e-6


@pytest.mark.parametrize("pos_enc", ["none", "absolute"])
def test_initial_loss_is_ln_vocab(pos_enc):
    hp = Hyperparameters(vocab_size=101, num_tokens=32, embedding_degree=32, num_layers=2,
                         num_heads=4, pos_enc=pos_enc)
    model = GPT(hp, Parameters(hp).init_reference(3))
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 101, (8, 32)), rng.integers(0, 101, (8, 32))
    loss = float(model.loss(Graph(record=False), ids, targets).data)
    assert abs(loss - math.log(101)) < 0.05


def test_overfits_one_batch():
    hp = Hyperparameters(vocab_size=20, num_tokens=8, embedding_degree=32, num_layers=2, num_heads=4)
    model = GPT(hp, Parameters(hp).init_reference(0))
    opt = AdamW(model.params, OptimizerConfig(lr=3e-3, warmup=10))
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 20, (4, 8)), rng.integers(0, 20, (4, 8))
    first, _ = train_step(model, opt, ids, targets)
    for _ in range(300):
        last, _ = train_step(model, opt, ids, targets)
    assert last < 0.1 * first, (first, last)


def test_batch_sampler_windows_and_determinism():
    tokens = np.arange(100)
    ids, targets = sample_batch(tokens, 16, 8, seed=1, step=3)
    assert ids.shape == targets.shape == (16, 8)
    np.testing.assert_array_equal(targets, ids + 1)  # consecutive tokens, shifted by one
    assert ids.max() < 99
    ids2, _ = sample_batch(tokens, 16, 8, seed=1, step=3)
    np.testing.assert_array_equal(ids, ids2)
    ids3, _ = sample_batch(tokens, 16, 8, seed=1, step=4)
    assert not np.array_equal(ids, ids3)
    with pytest.raises(ValueError, match="num_tokens"):
        sample_batch(np.arange(8), 2, 8, seed=0, step=0)


_TEN_STEPS = """
import numpy as np, sys
from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.model.gpt import GPT
from femtogpt.engine.optim import AdamW
from femtogpt.engine.params import Parameters
from femtogpt.train.step import sample_batch, train_step
# big enough that each shard's kernels run in parallel and its attention products are cut
hp = Hyperparameters(vocab_size=30, num_tokens=64, embedding_degree=64, num_layers=2, num_heads=4)
model = GPT(hp, Parameters(hp).init_reference(7))
opt = AdamW(model.params, OptimizerConfig(warmup=2))
tokens = np.random.default_rng(0).integers(0, 30, 5000)
import hashlib
from femtogpt.engine.runtime import engine_threads
with engine_threads(int(sys.argv[1])):
    for units in (2, 5):  # 5: units of 6 and 7 sequences, more units than 2 or 3 threads
        losses = []
        for step in range(10):
            ids, targets = sample_batch(tokens, 32, 64, seed=7, step=step)
            losses.append(train_step(model, opt, ids, targets, dropout=0.1, seed=7, units=units)[0])
        print(" ".join(np.float32(x).tobytes().hex() for x in losses),
              hashlib.sha256(model.params.data.tobytes()).hexdigest(),
              hashlib.sha256(opt.m.tobytes() + opt.v.tobytes()).hexdigest())
"""


def test_same_seed_same_bits_for_any_thread_count():
    # the batch's units go to whichever thread is free, so which thread runs which unit changes from
    # run to run; the weights, the moments and every loss must not. 16 threads oversubscribe 2 cores;
    # with 2 units and 4+ threads each unit's kernels and products run on several threads;
    # workqueue: Numba's fallback threading layer, which aborts if two threads launch kernels at
    # once, so the units take turns
    outputs = {}
    for threads, layer in (("1", "default"), ("2", "default"), ("3", "default"), ("4", "default"),
                           ("8", "default"), ("16", "default"), ("2", "workqueue")):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads, "NUMBA_THREADING_LAYER": layer}
        outputs[threads, layer] = subprocess.run([sys.executable, "-c", _TEN_STEPS, threads], env=env,
                                                 check=True, capture_output=True, text=True).stdout
    assert len(set(outputs.values())) == 1, outputs
    two, five = outputs["1", "default"].splitlines()
    assert len(two.split()) == 12 and two != five  # the unit count is part of the result


def test_shared_backward_buffers_and_stale_gradients_do_not_change_results():
    # layers of equal parity share backward buffers; a 5-layer model exercises the sharing, and
    # garbage left in the gradient buffer must be overwritten, not added to
    hp = Hyperparameters(vocab_size=13, num_tokens=6, embedding_degree=8, num_layers=5, num_heads=2)
    rng = np.random.default_rng(4)
    ids, targets = rng.integers(0, 13, (3, 6)), rng.integers(0, 13, (3, 6))
    grads = []
    for private, garbage in ((False, True), (True, False)):
        model = GPT(hp, Parameters(hp, np.float64).init_reference(1))
        model.params.grad[...] = 1e6 if garbage else 0.0
        g = Graph()
        loss = model.loss(g, ids, targets, dropout=0.1, key=3)
        if private:
            for fn in model._programs[(3, 6, 0)].functions():
                fn.grad_store = None
        g.backward(loss)
        grads.append(model.params.grad.copy())
    np.testing.assert_array_equal(grads[0], grads[1])
    assert np.abs(grads[0]).max() < 1e3


@pytest.mark.parametrize("batch", [1, 3, 4])
def test_sharded_loss_and_grad_equal_the_whole_batch(batch):
    # loss_and_grad and mean_loss run the batch as shards (side by side on their threads) and add
    # their gradients; without dropout that is the whole-batch loss and gradient up to rounding
    model = make_model(num_layers=2)
    rng = np.random.default_rng(6)
    ids, targets = rng.integers(0, 11, (batch, 4)), rng.integers(0, 11, (batch, 4))
    targets[0, 1] = -1  # an ignored target: the shards must share the batch's denominator
    g = Graph()
    whole = model.loss(g, ids, targets)
    g.backward(whole)
    expected = model.params.grad.copy()
    model.params.grad[...] = 1e6  # stale values must be overwritten, in every shard buffer too
    for k in range(1, 2):
        if batch > k:
            model.params.unit_tensors(k)
            model.params.unit_grad(k)[...] = -1e6
    loss = model.loss_and_grad(ids, targets)
    assert loss == pytest.approx(float(whole.data), rel=1e-12)
    assert model.mean_loss(ids, targets) == pytest.approx(float(whole.data), rel=1e-12)
    np.testing.assert_allclose(model.params.grad, expected, rtol=1e-10, atol=1e-13)


def test_sharded_gradient_with_dropout_is_the_derivative_of_its_loss():
    # with dropout each shard has its own masks; the gradient must still be the exact derivative
    # of the loss loss_and_grad reports (checked along random directions, float64)
    model = make_model(num_layers=2)
    rng = np.random.default_rng(7)
    ids, targets = rng.integers(0, 11, (4, 4)), rng.integers(0, 11, (4, 4))
    model.loss_and_grad(ids, targets, dropout=0.3, key=9)
    grad = model.params.grad.copy()
    theta = model.params.data.copy()
    for _ in range(3):
        d = rng.standard_normal(theta.size)
        eps = 1e-6
        model.params.data[...] = theta + eps * d
        up = model.loss_and_grad(ids, targets, dropout=0.3, key=9)
        model.params.data[...] = theta - eps * d
        down = model.loss_and_grad(ids, targets, dropout=0.3, key=9)
        model.params.data[...] = theta
        assert (up - down) / (2 * eps) == pytest.approx(float(grad @ d), rel=1e-6, abs=1e-9)


def test_shards_have_their_own_dropout_masks():
    # a batch of two copies of one sequence (one per shard) gives the gradient of that sequence
    # alone exactly when both shards drop the same units; their masks must differ
    model = make_model(num_layers=1)
    ids = np.tile(np.arange(4), (2, 1))
    targets = (ids + 1) % 11
    one = model.loss_and_grad(ids[:1], targets[:1], dropout=0.5, key=1)
    g_one = model.params.grad.copy()
    two = model.loss_and_grad(ids, targets, dropout=0.5, key=1)
    assert two != pytest.approx(one, rel=1e-9)
    assert not np.allclose(model.params.grad, g_one)
    # without dropout the two copies do give the single sequence's loss and gradient
    assert model.loss_and_grad(ids, targets) == pytest.approx(model.loss_and_grad(ids[:1], targets[:1]))


def test_op_profile_times_every_op_of_a_step():
    from femtogpt.engine.autograd import OpProfile
    from femtogpt.cli.bench import profile_table

    model = make_model(num_layers=2, dtype=np.float32)
    rng = np.random.default_rng(8)
    ids, targets = rng.integers(0, 11, (4, 4)), rng.integers(0, 11, (4, 4))
    with OpProfile() as prof:
        model.loss_and_grad(ids, targets)
    ops = ["Embedding", "LayerNorm", "MatMul", "CausalSelfAttention", "ResidualLayerNorm", "BiasGelu",
           "CrossEntropy"]
    assert set(prof.seconds) == {f"{op}.{d}" for op in ops for d in ("forward", "backward")}
    assert all(s > 0 for s in prof.seconds.values())
    snapshot = dict(prof.seconds)
    model.loss_and_grad(ids, targets)  # profiling is off again: nothing more is recorded
    assert prof.seconds == snapshot
    table = profile_table({"wall_s_per_step": 0.01, "op_s_per_step": prof.seconds})
    assert table.count("\n") == len(prof.seconds) and "MatMul.backward" in table


def test_run_units_folds_in_unit_order_and_waits_for_every_unit_when_one_fails():
    import threading
    import time

    import numba

    from femtogpt.engine.threads import run_units

    def run(k, worker):
        if k == 0:
            time.sleep(0.2)  # unit 0 finishes last: the others must wait for it to be folded
        return k * 10

    folded = []
    before = numba.get_num_threads()
    assert run_units(5, run, lambda k, r: folded.append((k, r))) == [0, 10, 20, 30, 40]
    assert folded == [(0, 0), (1, 10), (2, 20), (3, 30), (4, 40)]
    assert numba.get_num_threads() == before

    finished, started = threading.Event(), threading.Event()

    def fails_or_slow(k, worker):
        if k == 0:
            started.wait(timeout=30 if before > 1 else 0)  # unit 1 is running on the other thread
            raise ValueError("bad unit")
        started.set()
        time.sleep(0.3)
        finished.set()

    with pytest.raises(ValueError, match="bad unit"):
        run_units(2, fails_or_slow, lambda k, r: None)
    assert finished.is_set() or before < 2  # a unit that started has ended; one thread stops at the failure
    assert numba.get_num_threads() == before


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_float32_gradients_match_float64(dropout):
    # the float32 fast paths (vectorised exp, rational tanh, integer-key row max, BLAS attention)
    # give the float64 gradient to float32 accuracy, tensor by tensor
    m64 = make_model(num_tokens=32, embedding_degree=32, num_layers=2, num_heads=4, vocab_size=50,
                     pos_enc="absolute")
    m32 = GPT(m64.hp, Parameters(m64.hp, np.float32))
    m32.params.data[...] = m64.params.data
    rng = np.random.default_rng(9)
    ids, targets = rng.integers(0, 50, (8, 32)), rng.integers(0, 50, (8, 32))
    l64 = m64.loss_and_grad(ids, targets, dropout=dropout, key=3)
    l32 = m32.loss_and_grad(ids, targets, dropout=dropout, key=3)
    assert l32 == pytest.approx(l64, rel=1e-6)
    g64, g32 = m64.params.named_grads(), m32.params.named_grads()
    for name in g64:
        err = np.linalg.norm(g32[name] - g64[name]) / np.linalg.norm(g64[name])
        assert err < 5e-5, f"{name}: relative error {err:.1e}"
