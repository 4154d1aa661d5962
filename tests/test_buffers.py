"""model/buffers.py lists exactly the buffers the Functions of a training step allocate."""
from collections import Counter

import numpy as np
import pytest

from femtogpt.config import Hyperparameters
from femtogpt.engine.params import Parameters
from femtogpt.model.buffers import parameter_buffers, shard_sizes, step_buffers, total_bytes
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


@pytest.mark.parametrize("B,layers,dropout,dtype", [(8, 3, 0.1, np.float32), (5, 1, 0.0, np.float32),
                                                    (1, 2, 0.2, np.float64), (3, 4, 0.0, np.float64)])
def test_step_buffers_match_what_a_training_step_allocates(B, layers, dropout, dtype):
    hp = Hyperparameters(vocab_size=70, num_tokens=9, embedding_degree=12, num_layers=layers, num_heads=3)
    model = GPT(hp, Parameters(hp, dtype).init_reference(0))
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 70, (B, 9)), rng.integers(0, 70, (B, 9))
    for _ in range(2):  # the second step allocates nothing new
        model.loss_and_grad(ids, targets, dropout=dropout, key=1)
    listed = step_buffers(hp, B, dtype=dtype, dropout=dropout > 0)
    real = allocated(model)
    assert len(real) == len(listed)
    assert sum(a.nbytes for a in real) == total_bytes(listed)
    assert Counter((a.shape, a.dtype) for a in real) == Counter((s, dt) for _, s, dt in listed)
    assert len({name for name, _, _ in listed}) == len(listed)


def test_parameter_buffers_and_shards():
    hp = Hyperparameters(vocab_size=70, num_tokens=9, embedding_degree=12, num_layers=2, num_heads=3)
    assert shard_sizes(1) == [1] and shard_sizes(5) == [2, 3] and shard_sizes(32) == [16, 16]
    names = [name for name, _, _ in parameter_buffers(hp, 32)]
    assert names == ["values", "grad", "shard1.grad", "adam.m", "adam.v"]
    assert total_bytes(parameter_buffers(hp, 1)) == 4 * 4 * hp.num_params()
