"""Run small kernels on one thread.

Waking Numba's other threads for a parallel loop costs more than a small op's work, and on a busy
machine a woken thread may wait a whole scheduler slice: a tiny model ran 100x slower with 2
threads than with 1. Every kernel gives the same bits for any thread count, so switching changes
speed only. Usage: `t = Threads(); t.set_for(n_elements); ...; t.restore()`, or `with serial_if_small(n):`.

`run_units(count, run, fold)` runs the work units of a step (the model's batch units) on a pool of
threads that take the next unit as they free up, and folds their results in unit order; with one
thread it runs them one after another, with the same results.
"""
import functools
import threading
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


_concurrent_ok = None


def concurrent_kernels_ok():
    """Can two Python threads run parallel kernels at once? Not under Numba's workqueue layer (the
    fallback when neither OpenMP nor TBB loads, e.g. macOS without libomp): it aborts the process."""
    global _concurrent_ok
    if _concurrent_ok is None:
        numba.get_num_threads()  # launches Numba's thread pool, which chooses the threading layer
        _concurrent_ok = numba.threading_layer() in ("omp", "tbb")
    return _concurrent_ok


def run_alongside(pool, tasks):
    """[task() for task in tasks]: tasks[1:] on `pool`, tasks[0] on the calling thread. Returns only
    when every task has finished, even when one failed: no task may still write after we return."""
    futures = [pool.submit(task) for task in tasks[1:]]
    try:
        first = tasks[0]()
    finally:
        wait(futures)
    return [first] + [f.result() for f in futures]


_unit_pool = None


def run_units(count, run, fold):
    """Run `run(k, worker)` for every work unit k in range(count) and `fold(k, result)` for each in
    the order k = 0, 1, ..., count - 1; returns [result for each k].

    The units go to min(threads, count) workers (the calling thread is worker 0, `worker` names the
    one running a unit, for its own buffers), each taking the next unit as soon as it is free, so a
    core that another process keeps busy only takes fewer units. Each worker's kernels get
    threads // workers threads. `fold` runs on whichever worker completes the next unit of the
    order, one at a time: its order, like the units themselves, never depends on the thread count.
    Under a threading layer that is not thread-safe the units run one after another (same results)."""
    global _unit_pool
    full = numba.get_num_threads()
    workers = min(full, count)
    if workers < 2 or not concurrent_kernels_ok():
        results = []
        for k in range(count):
            results.append(run(k, 0))
            fold(k, results[k])
        return results
    share = max(1, full // workers)
    results, done = [None] * count, {}
    state = {"next_unit": 0, "next_fold": 0, "failed": False}
    lock, fold_lock = threading.Lock(), threading.Lock()

    def take():
        with lock:
            k = state["next_unit"]
            if k >= count or state["failed"]:
                return None
            state["next_unit"] = k + 1
            return k

    def worker(w):
        numba.set_num_threads(share)  # per thread: the setting is thread-local
        try:
            while (k := take()) is not None:
                results[k] = run(k, w)
                with lock:
                    done[k] = True
                if fold_lock.acquire(blocking=False):  # else the holder (or a later one) folds it
                    try:
                        _fold_ready(state, done, results, fold, lock)
                    finally:
                        fold_lock.release()
        except BaseException:
            with lock:
                state["failed"] = True
            raise

    if _unit_pool is None or _unit_pool._max_workers < workers - 1:
        _unit_pool = ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="femtogpt-unit")
    try:
        run_alongside(_unit_pool, [functools.partial(worker, w) for w in range(workers)])
    finally:
        numba.set_num_threads(full)
    _fold_ready(state, done, results, fold, lock)  # units whose fold no worker was free to take
    return results


def _fold_ready(state, done, results, fold, lock):
    """Fold the completed units that come next in order."""
    while True:
        with lock:
            k = state["next_fold"]
            if not done.get(k):
                return
            state["next_fold"] = k + 1
        fold(k, results[k])
