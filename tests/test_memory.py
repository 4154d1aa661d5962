"""model/memory.py: the estimate equals the real buffers, extrapolates in layers, and refuses what cannot fit."""
from dataclasses import replace

import numpy as np
import pytest

from femtogpt.config import Hyperparameters
from femtogpt.model.buffers import parameter_buffers, step_buffers, total_bytes
from femtogpt.model.memory import ModelTooLarge, check_fits, model_bytes, training_bytes

HP = Hyperparameters(vocab_size=50, num_tokens=16, embedding_degree=32, num_layers=2, num_heads=4)


@pytest.mark.parametrize("layers", [1, 2, 3, 4, 7])
def test_training_bytes_is_the_buffer_list_at_any_depth(layers):
    hp = replace(HP, num_layers=layers)
    exact = total_bytes(step_buffers(hp, 8, dropout=True)) + total_bytes(parameter_buffers(hp, 8))
    assert training_bytes(hp, 8) == exact


def test_huge_hyperparameters_are_estimated_instantly_and_refused():
    hp = Hyperparameters(vocab_size=2**27, num_tokens=80, embedding_degree=2**30, num_layers=10**7,
                         num_heads=2**30)
    assert training_bytes(hp, 32) > 10**20 and model_bytes(hp) > 10**20
    with pytest.raises(ModelTooLarge, match=r"^this model needs .* GB; this machine has .* available$"):
        check_fits(training_bytes(hp, 32))


def test_available_memory_honours_the_address_space_limit():
    import subprocess
    import sys

    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY));"
            "from femtogpt.model.memory import available_bytes; print(available_bytes())")
    limited = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0 < limited <= 3 << 30
    check_fits(model_bytes(HP, np.float32))  # a small model fits


def test_sizes_read_well_at_every_scale():
    from femtogpt.model.memory import gigabytes

    assert [gigabytes(n) for n in (12e6, 37.2e9, 2.4e23)] == ["12 MB", "37.2 GB", "2.4e+14 GB"]
