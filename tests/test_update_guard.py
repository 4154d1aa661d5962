"""The update guard (issue 13): an AdamW update that would leave a non-finite weight or moment after a
finite gradient changes nothing and stops the run with the NaN message; the file keeps the last good step.

The cases really overflow: an lr that is finite in the Python config but not in float32, an lr times
weight decay past float32's range, and moments a file may hold (m = 1, v = 0) divided by eps. The CLI
refuses such --lr values, so they are built here through the library.
"""
import numba
import numpy as np
import pytest

from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.engine import optim
from femtogpt.engine.optim import AdamW, NonFiniteUpdate
from femtogpt.engine.params import Parameters
from femtogpt.io.checkpoint import create
from femtogpt.io.logs import TRAIN_STEP, expanded
from femtogpt.io.model_file import load_model_file
from femtogpt.tasks.toy_data import generate_text
from femtogpt.text.build import build_tokenizer
from femtogpt.train.loop import TrainOptions, run_training
from femtogpt.train.step import NonFiniteLoss, sample_batch, train_step
from tests.run_cli import run

HP = Hyperparameters(vocab_size=101, num_tokens=8, embedding_degree=16, num_layers=1, num_heads=2)


def optimizer_state(params, opt):
    return params.data.tobytes(), opt.m.tobytes(), opt.v.tobytes(), opt.step


def warmed_up(dtype=np.float32, config=None, steps=2):
    """Parameters and an AdamW that has made `steps` good updates (non-zero moments)."""
    params = Parameters(HP, dtype).init_reference(0)
    opt = AdamW(params, config or OptimizerConfig(warmup=0))
    rng = np.random.default_rng(0)
    for _ in range(steps):
        params.grad[...] = rng.standard_normal(params.size) * 1e-2
        opt.update()
    params.grad[...] = rng.standard_normal(params.size) * 1e-2  # a finite gradient for the next update
    return params, opt


@pytest.mark.parametrize("case", ["lr overflows float32", "lr times weight decay overflows",
                                  "moments from a file over eps"])
def test_a_non_finite_update_changes_nothing(case):
    params, opt = warmed_up()
    before = optimizer_state(params, opt)
    if case == "lr overflows float32":
        lr = 1e39  # finite as a Python float, inf in float32
    elif case == "lr times weight decay overflows":
        opt.config, lr = OptimizerConfig(warmup=0, weight_decay=1e10), 1e30
    else:  # m = 1, v = 0 on one element (a file may hold it): m_hat * lr / eps overflows at lr 1e31
        opt.m[123], opt.v[123], params.grad[123], lr = 1.0, 0.0, 0.0, 1e31
        before = optimizer_state(params, opt)
    assert np.isfinite(params.grad).all()
    with pytest.raises(NonFiniteUpdate, match=r"the update at step 3 .*non-finite"):
        opt.update(lr=lr)
    assert optimizer_state(params, opt) == before  # weights, moments and step, bit for bit


def test_float64_engine_is_guarded_too():
    params, opt = warmed_up(np.float64)
    opt.config = OptimizerConfig(warmup=0, weight_decay=1e10)
    before = optimizer_state(params, opt)
    with pytest.raises(NonFiniteUpdate):
        opt.update(lr=1e300)
    assert optimizer_state(params, opt) == before


def test_one_bad_element_anywhere_stops_the_whole_update():
    # elements in the first and in the last (partial) chunk: no chunk may be written
    n = 3 * optim._CHUNK + 5
    p, g = np.full(n, 0.5, np.float32), np.full(n, 1e-3, np.float32)
    f = np.float32
    for bad in (0, n - 1, optim._CHUNK):
        m, v = np.zeros(n, np.float32), np.full(n, 1e-6, np.float32)
        m[bad], v[bad] = f(1.0), f(0.0)
        g[bad] = 0.0  # v stays 0: m_hat * lr / eps overflows there only
        state = (p.tobytes(), m.tobytes(), v.tobytes())
        ok = optim.adamw_update(p, g, m, v, f(1e31), f(0.9), f(0.999), f(1e-8), f(0.01), f(0.5), f(0.5),
                                optim._CHUNK)
        assert not ok and (p.tobytes(), m.tobytes(), v.tobytes()) == state
    m, v, g = np.zeros(n, np.float32), np.full(n, 1e-6, np.float32), np.full(n, 1e-3, np.float32)
    assert optim.adamw_update(p, g, m, v, f(1e-3), f(0.9), f(0.999), f(1e-8), f(0.01), f(0.5), f(0.5),
                              optim._CHUNK)
    assert np.isfinite(p).all() and not (p == 0.5).any()


def test_guarded_update_gives_the_same_bits_on_one_thread_and_on_all():
    results = []
    for threads in (1, numba.get_num_threads()):
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            params, opt = warmed_up(steps=3)
            opt.update()
        finally:
            numba.set_num_threads(previous)
        results.append(optimizer_state(params, opt))
    assert results[0] == results[1]


def session():
    ckpt = create(HP, build_tokenizer("ascii"), seed=1)
    ckpt.ensure_optimizer(OptimizerConfig(lr=1e-2, warmup=0))
    return ckpt, ckpt.tokenizer.encode(generate_text("simple_dummy", 300, seed=1))


class _Quiet:
    def step(self, *a): pass
    def validation(self, *a): pass
    def message(self, *a): pass
    def close(self): pass


def test_train_step_turns_it_into_the_nan_stop():
    ckpt, tokens = session()
    ids, targets = sample_batch(tokens, 2, HP.num_tokens, 0, 0)
    opt = ckpt.optimizer
    opt.config = OptimizerConfig(lr=1e39, warmup=0)
    before = optimizer_state(ckpt.model.params, opt)
    with pytest.raises(NonFiniteLoss, match="non-finite"):
        train_step(ckpt.model, opt, ids, targets)
    assert optimizer_state(ckpt.model.params, opt) == before


def test_the_run_keeps_every_good_step_and_saves_the_last_one(monkeypatch):
    # steps 1..3 are good; the update of step 4 overflows (the schedule jumps to 1e39 there)
    good, tokens = session()
    run_training(good, tokens, TrainOptions(steps=3, seed=0, batch_size=2, save_every=0), lambda: None, _Quiet())

    ckpt, tokens = session()
    real = OptimizerConfig.learning_rate
    monkeypatch.setattr(OptimizerConfig, "learning_rate", lambda self, step: 1e39 if step >= 3 else real(self, step))
    saved = []
    result = run_training(ckpt, tokens, TrainOptions(steps=10, seed=0, batch_size=2, save_every=0),
                          lambda: saved.append(optimizer_state(ckpt.model.params, ckpt.optimizer)), _Quiet())
    assert "the update at step 4" in result.failure and result.steps == 3
    assert saved == [optimizer_state(good.model.params, good.optimizer)]  # the last good step, bitwise
    assert [log["step"] for log in expanded(ckpt.logs) if log["kind"] == TRAIN_STEP] == [1, 2, 3]


def test_cli_says_the_nan_message_and_the_file_keeps_the_last_good_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.txt").write_text(generate_text("simple_dummy", 300, seed=1))
    run("init", "--num-tokens", 8, "--embedding-degree", 16, "--num-layers", 1, "--num-heads", 2, "--seed", 1)
    real = OptimizerConfig.learning_rate
    monkeypatch.setattr(OptimizerConfig, "learning_rate", lambda self, step: 1e39 if step >= 3 else real(self, step))
    r = run("train", "--dataset", "d.txt", "--steps", 6, "--batch-size", 2, "--quiet", ok=False)
    assert r.exit_code == 1
    error = r.output.strip().splitlines()[-1]
    assert error.startswith("Error: the update at step 4 (lr 1e+39) would make a weight or an optimizer moment "
                            "non-finite; stopped, and model.dat keeps the last good weights (step 3)")
    mf = load_model_file(tmp_path / "model.dat")
    assert mf.optimizer["step"] == 3
    assert all(np.isfinite(t).all() for t in (*mf.tensors.values(), *mf.optimizer["m"].values(),
                                              *mf.optimizer["v"].values()))


def test_finite_gradients_whose_squared_norm_overflows_float32_are_not_a_nan_stop(monkeypatch):
    # sum(g^2) overflows float32 above ~1.8e19 while every gradient is finite: that is no NaN stop
    ckpt, tokens = session()
    ids, targets = sample_batch(tokens, 2, HP.num_tokens, 0, 0)
    model, opt = ckpt.model, ckpt.optimizer
    real = model.loss_and_grad

    def huge_gradient(*a, **k):
        loss = real(*a, **k)
        model.params.grad[:2] = 3e19
        return loss

    monkeypatch.setattr(model, "loss_and_grad", huge_gradient)
    big = np.full(2, 3e19, np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.dot(big, big))  # the squared norm overflows, every gradient is finite
    loss, _ = train_step(model, opt, ids, targets)
    assert np.isfinite(loss) and opt.step == 1

    def nan_gradient(*a, **k):
        loss = real(*a, **k)
        model.params.grad[5] = np.nan
        return loss

    monkeypatch.setattr(model, "loss_and_grad", nan_gradient)
    with pytest.raises(NonFiniteLoss, match=r"the gradients became non-finite at step 2 \(while the loss, \d"):
        train_step(model, opt, ids, targets)
