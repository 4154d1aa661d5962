"""model/buffers.py lists exactly the buffers the Functions of a training step allocate."""
from collections import Counter

import numpy as np
import pytest

from femtogpt.config import Hyperparameters
from femtogpt.engine.params import Parameters
import numba

from femtogpt.model.buffers import parameter_buffers, step_buffers, total_bytes, unit_sizes
from femtogpt.model.gpt import GPT


def allocated(model):
    """Every distinct array in the Functions' forward buffers and gradient stores."""
    arrays, stores = {}, {}
    for prog in model._programs.values():
        for fn in prog.functions():
            for store in (fn.__dict__.get("_buffers"), fn.forward_store, fn.grad_store):
                if store is not None:
                    stores[id(store)] = store
    for store in stores.values():
        for a in store.values():
            arrays[id(a)] = a
    return list(arrays.values())


def unit_grads(model):
    """The flat gradient buffers of units other than unit 0."""
    return [grad for grad, _ in model.params.__dict__.get("_units", {}).values()]


@pytest.mark.parametrize("B,layers,dropout,dtype,units", [
    (8, 3, 0.1, np.float32, 2), (5, 1, 0.0, np.float32, 2), (1, 2, 0.2, np.float64, 2),
    (3, 4, 0.0, np.float64, 2), (7, 2, 0.1, np.float32, 3), (6, 1, 0.0, np.float32, 1)])
def test_step_buffers_match_what_a_training_step_allocates(B, layers, dropout, dtype, units):
    # on one thread (one worker runs every unit) the lists are exact
    hp = Hyperparameters(vocab_size=70, num_tokens=9, embedding_degree=12, num_layers=layers, num_heads=3)
    model = GPT(hp, Parameters(hp, dtype).init_reference(0))
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 70, (B, 9)), rng.integers(0, 70, (B, 9))
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        for _ in range(2):  # the second step allocates nothing new
            model.loss_and_grad(ids, targets, dropout=dropout, key=1, units=units)
    finally:
        numba.set_num_threads(threads)
    listed = step_buffers(hp, B, dtype=dtype, dropout=dropout > 0, units=units, workers=1)
    real = allocated(model)
    assert len(real) == len(listed)
    assert sum(a.nbytes for a in real) == total_bytes(listed)
    assert Counter((a.shape, a.dtype) for a in real) == Counter((s, dt) for _, s, dt in listed)
    assert len({name for name, _, _ in listed}) == len(listed)
    grads = [n for n, _, _ in parameter_buffers(hp, B, dtype, units=units, workers=1) if n.startswith("unit_grad")]
    assert len(grads) == len(unit_grads(model))


@pytest.mark.parametrize("units", [2, 3, 5])
def test_with_several_workers_the_lists_bound_what_is_allocated(units):
    hp = Hyperparameters(vocab_size=70, num_tokens=9, embedding_degree=12, num_layers=2, num_heads=3)
    model = GPT(hp, Parameters(hp).init_reference(0))
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 70, (7, 9)), rng.integers(0, 70, (7, 9))
    for _ in range(3):
        model.loss_and_grad(ids, targets, dropout=0.1, key=1, units=units)
    workers = numba.get_num_threads()
    assert sum(a.nbytes for a in allocated(model)) <= total_bytes(
        step_buffers(hp, 7, dropout=True, units=units, workers=workers))
    grads = [n for n, _, _ in parameter_buffers(hp, 7, units=units, workers=workers) if n.startswith("unit_grad")]
    assert 1 <= len(unit_grads(model)) <= len(grads)


def test_parameter_buffers_and_units():
    hp = Hyperparameters(vocab_size=70, num_tokens=9, embedding_degree=12, num_layers=2, num_heads=3)
    assert unit_sizes(1) == [1] and unit_sizes(5) == [2, 3] and unit_sizes(32) == [16, 16]
    assert unit_sizes(7, 3) == [2, 2, 3] and unit_sizes(2, 5) == [1, 1] and unit_sizes(9, 1) == [9]
    names = [name for name, _, _ in parameter_buffers(hp, 32)]
    assert names == ["values", "grad", "unit_grad1", "adam.m", "adam.v"]
    assert len(parameter_buffers(hp, 32, units=4)) == 7 and len(parameter_buffers(hp, 32, units=4, workers=1)) == 5
    assert total_bytes(parameter_buffers(hp, 1)) == 4 * 4 * hp.num_params()
