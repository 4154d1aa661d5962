"""Run small kernels on one thread.

Waking Numba's other threads for a parallel loop costs more than a small op's work, and on a busy
machine a woken thread may wait a whole scheduler slice: a tiny model ran 100x slower with 2
threads than with 1. Every kernel gives the same bits for any thread count, so switching changes
speed only. Usage: `t = Threads(); t.set_for(n_elements); ...; t.restore()`, or `with serial_if_small(n):`.
"""
from contextlib import contextmanager

import numba

SERIAL_BELOW = 1 << 15  # elements of the data an op touches


class Threads:
    def __init__(self):
        self.full = None

    def set_for(self, size):
        if self.full is None:
            self.full = numba.get_num_threads()
        numba.set_num_threads(1 if size < SERIAL_BELOW else self.full)

    def restore(self):
        if self.full is not None:
            numba.set_num_threads(self.full)
            self.full = None


@contextmanager
def serial_if_small(size):
    threads = Threads()
    threads.set_for(size)
    try:
        yield
    finally:
        threads.restore()
