"""Column sums that do not depend on the thread count.

Kernels that reduce over rows (bias and LayerNorm-gain gradients) write one partial sum per fixed
chunk of ROW_CHUNK rows; `sum_partials` then adds the chunks in order, one column per iteration.
"""
from numba import prange

from femtogpt.engine.runtime import kernel

ROW_CHUNK = 64


def num_chunks(n_rows):
    return (n_rows + ROW_CHUNK - 1) // ROW_CHUNK


@kernel(parallel=True)
def sum_partials(out, partial):
    # partial: (n_chunks, C) -> out: (C,), chunks added in index order
    n, C = partial.shape
    for c in prange(C):
        acc = 0.0
        for k in range(n):
            acc += partial[k, c]
        out[c] = acc


@kernel(parallel=True)
def column_sum_partials(partial, x, chunk):
    # x: (N, C) -> partial: (ceil(N / chunk), C); each chunk of rows summed by one iteration
    N, C = x.shape
    for k in prange(partial.shape[0]):
        for c in range(C):
            partial[k, c] = 0.0
        for r in range(k * chunk, min(N, (k + 1) * chunk)):
            for c in range(C):
                partial[k, c] += x[r, c]


def column_sum(out, x, scratch):
    """out[c] = sum_r x[r, c], deterministic for any thread count; scratch: (num_chunks(N), C)."""
    column_sum_partials(scratch, x, ROW_CHUNK)
    sum_partials(out, scratch)
    return out


@kernel(parallel=True)
def add_into(out, x):
    # out += x, elementwise (1-D)
    for i in prange(out.shape[0]):
        out[i] += x[i]
