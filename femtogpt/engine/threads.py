"""Run small kernels on one thread.

Waking Numba's other threads for a parallel loop costs more than a small op's work, and on a busy
machine a woken thread may wait a whole scheduler slice: a tiny model ran 100x slower with 2
threads than with 1. Every kernel gives the same bits for any thread count, so switching changes
speed only. Usage: `t = Threads(); t.set_for(n_elements); ...; t.restore()`, or `with serial_if_small(n):`.

`run_split(tasks)` runs independent tasks (the model's batch shards) side by side, each with its
share of the threads; with one thread it runs them one after another, with the same results.
"""
import functools
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numba

SERIAL_BELOW = 1 << 15  # elements of the data an op touches


class Threads:
    def __init__(self):
        self.full = None  # this thread's setting when first asked
        self.current = None

    def set_for(self, size):
        if self.full is None:
            self.full = self.current = numba.get_num_threads()
        want = 1 if size < SERIAL_BELOW else self.full
        if want != self.current:  # a call costs ~1 us; most ops keep the setting
            numba.set_num_threads(want)
            self.current = want

    def restore(self):
        if self.full is not None and self.current != self.full:
            numba.set_num_threads(self.full)
        self.full = self.current = None


@contextmanager
def serial_if_small(size):
    threads = Threads()
    threads.set_for(size)
    try:
        yield
    finally:
        threads.restore()


_shard_pool = None
_concurrent_ok = None


def concurrent_kernels_ok():
    """Can two Python threads run parallel kernels at once? Not under Numba's workqueue layer (the
    fallback when neither OpenMP nor TBB loads, e.g. macOS without libomp): it aborts the process."""
    global _concurrent_ok
    if _concurrent_ok is None:
        numba.get_num_threads()  # launches Numba's thread pool, which chooses the threading layer
        _concurrent_ok = numba.threading_layer() in ("omp", "tbb")
    return _concurrent_ok


def run_split(tasks):
    """[task() for task in tasks], run concurrently when Numba has a thread per task (each task's
    kernels then get threads // len(tasks) threads; the calling thread runs the first task). Under
    a threading layer that is not thread-safe the tasks run one after another (same results)."""
    global _shard_pool
    full = numba.get_num_threads()
    if full < 2 or len(tasks) < 2 or not concurrent_kernels_ok():
        return [task() for task in tasks]
    share = max(1, full // len(tasks))

    def with_share(task):
        numba.set_num_threads(share)  # per thread: the setting is thread-local
        return task()

    if _shard_pool is None or _shard_pool._max_workers < len(tasks) - 1:
        _shard_pool = ThreadPoolExecutor(max_workers=len(tasks) - 1, thread_name_prefix="femtogpt-shard")
    try:
        return run_alongside(_shard_pool, [functools.partial(with_share, task) for task in tasks])
    finally:
        numba.set_num_threads(full)


def run_alongside(pool, tasks):
    """[task() for task in tasks]: tasks[1:] on `pool`, tasks[0] on the calling thread. Returns only
    when every task has finished, even when one failed: no task may still write after we return."""
    futures = [pool.submit(task) for task in tasks[1:]]
    try:
        first = tasks[0]()
    finally:
        wait(futures)
    return [first] + [f.result() for f in futures]
