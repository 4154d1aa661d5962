"""How much memory a model needs, estimated from its hyperparameters alone, and whether it fits.

Every command checks this before it allocates anything, so a file or a flag asking for a model this
machine cannot hold ends in one line ("this model needs 37.2 GB to train at batch 32; this machine
has 23.1 GB available") instead of a MemoryError after minutes of swapping. The training figure is
model/buffers.py's exact list of step buffers, extrapolated linearly in the number of layers (every
layer adds the same buffers), so huge values cost no time to estimate.
"""
import math
import os
import resource
from dataclasses import replace

import numpy as np

from femtogpt.model.buffers import parameter_buffers, step_buffers
from femtogpt.model.gpt import DEFAULT_UNITS

HEADROOM = 1.15  # Python objects, NumPy temporaries, the tokenizer and the file being read


class ModelTooLarge(ValueError):
    """The model (with this batch) does not fit in the memory this process may use."""


def _bytes(buffers):
    return sum(math.prod(shape) * dtype.itemsize for _, shape, dtype in buffers)


def training_bytes(hp, batch_size, dtype=np.float32, dropout=True, units=DEFAULT_UNITS, workers=None):
    """Bytes of every array a training step allocates: parameters, gradients, AdamW, activations
    (for `workers` threads running the batch's `units`; default: the most any thread count needs)."""
    def at(L):
        h = replace(hp, num_layers=L)
        return _bytes(step_buffers(h, batch_size, dtype=dtype, dropout=dropout, units=units, workers=workers)) + \
            _bytes(parameter_buffers(h, batch_size, dtype, units=units, workers=workers))

    if hp.num_layers <= 3:
        return at(hp.num_layers)
    two, three = at(2), at(3)
    return two + (hp.num_layers - 2) * (three - two)


def model_bytes(hp, dtype=np.float32, optimizer=True):
    """Bytes of the parameters (and AdamW's two moments) alone: what loading a model file holds."""
    return hp.num_params() * np.dtype(dtype).itemsize * (3 if optimizer else 1)


def available_bytes():
    """What this process may still allocate: the smaller of the machine's available memory
    (/proc/meminfo MemAvailable, else physical memory) and its address-space limit (RLIMIT_AS)."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    if not limits:
        try:
            limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    return min(limits) if limits else None


def gigabytes(n):
    """12 MB, 37.2 GB, 2.4e+14 GB: readable at every size a crafted file or flag can ask for."""
    if n < 1e8:
        return f"{n / 1e6:.0f} MB"
    return f"{n / 1e9:.1f} GB" if n < 1e15 else f"{n / 1e9:.1e} GB"


def check_fits(needed, what="this model"):
    """Raise ModelTooLarge when `needed` bytes (plus headroom) exceed what this process may allocate."""
    have = available_bytes()
    if have is not None and needed * HEADROOM > have:
        raise ModelTooLarge(f"{what} needs {gigabytes(needed * HEADROOM)}; this machine has "
                            f"{gigabytes(have)} available")
