"""Runtime settings, in one place: Numba's and BLAS's thread counts, and where compiled kernels live.

Nothing here runs at import: the CLI and the Python API enter `engine_threads()` around engine work,
and it gives the caller's settings back on exit. Inside it:
- Numba runs one thread per physical core (hyperthread siblings share a core's vector units and only
  slow each other down), at most the pool Numba launched (numba.config.NUMBA_NUM_THREADS).
- NumPy's BLAS runs on one thread, whatever OPENBLAS_NUM_THREADS says: femtogpt cuts big products
  over its own threads (ops/matmul.py), and BLAS workers spinning after each call fought Numba's
  threads for the cores (a tiny-config step took 2.2x longer with OPENBLAS_NUM_THREADS=2).
- Kernels load from and compile into kernel_cache_dir(), never the package directory (every
  kernel is made by `kernel()` below, which fixes its cache directory as the module loads).
- Numba's OpenMP threads sleep between kernels instead of spinning (OMP_WAIT_POLICY=PASSIVE unless
  the user set it): spinning, they took the cores of the threads that run BLAS and a step took up to
  2x longer. OpenMP reads this only when Numba starts its pool, so it is set just for that moment.
"""
import functools
import os
import zlib
from contextlib import contextmanager

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # femtogpt/


def physical_cores(cpus=None, sysfs="/sys/devices/system/cpu"):
    """How many physical cores the CPUs this process may run on belong to (hyperthread siblings
    count once), from Linux sysfs; None where that is unknown."""
    try:
        cpus = os.sched_getaffinity(0) if cpus is None else cpus
        cores = set()
        for cpu in cpus:
            with open(f"{sysfs}/cpu{cpu}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        return len(cores) or None
    except (AttributeError, OSError):
        return None


def kernel_fingerprint(package_dir=PACKAGE_DIR):
    """8 hex digits hashing the sources of every Numba kernel (engine/ops/*.py, engine/optim.py).

    Numba's own check notices edits to the file that defines a kernel but not to helpers it inlines
    from other files (ops/fastmath.py, ops/dropout.py): a new fingerprint is a fresh cache."""
    ops_dir = os.path.join(package_dir, "engine", "ops")
    files = [os.path.join(ops_dir, n) for n in sorted(os.listdir(ops_dir)) if n.endswith(".py")]
    crc = 0
    for path in files + [os.path.join(package_dir, "engine", "optim.py")]:
        with open(path, "rb") as f:
            crc = zlib.crc32(f.read(), crc)
    return f"{crc:08x}"


def kernel_cache_dir(environ=os.environ):
    """$NUMBA_CACHE_DIR when the user set it (used as it is), else
    $XDG_CACHE_HOME/femtogpt/numba/<kernel fingerprint> (~/.cache when XDG_CACHE_HOME is unset)."""
    if environ.get("NUMBA_CACHE_DIR"):
        return environ["NUMBA_CACHE_DIR"]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "femtogpt", "numba", kernel_fingerprint())


def kernel(**options):
    """`numba.njit(cache=True, **options)` with the on-disk cache in kernel_cache_dir().

    Numba fixes a kernel's cache directory as the decorator runs, from numba.config.CACHE_DIR, so
    every kernel of femtogpt is made through this: the setting is changed for that moment only, and
    neither the environment nor Numba's configuration is left changed. Compiling stays lazy."""
    import numba

    def decorate(fn):
        saved = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = _cache_dir()
        try:
            return numba.njit(cache=True, **options)(fn)
        finally:
            numba.config.CACHE_DIR = saved

    return decorate


@functools.lru_cache(maxsize=1)
def _cache_dir():
    return kernel_cache_dir()


def start_numba_pool():
    """Start Numba's thread pool (once per process; later calls do nothing) with OpenMP threads that
    sleep between kernels. OpenMP reads OMP_WAIT_POLICY only as it loads, which is now: the variable
    is set for this moment only, unless the user set it, and os.environ is as it was on return."""
    import numba

    if "OMP_WAIT_POLICY" in os.environ:
        numba.get_num_threads()
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        numba.get_num_threads()  # launches the pool: the threading layer, and OpenMP with it, loads
    finally:
        del os.environ["OMP_WAIT_POLICY"]


def default_threads():
    """One Numba thread per physical core, at most the pool Numba launched."""
    import numba

    pool = numba.config.NUMBA_NUM_THREADS
    return min(physical_cores() or pool, pool)


@contextmanager
def engine_threads(n=None):
    """Run the engine inside this: Numba on `n` threads (default: one per physical core; more than
    Numba's pool is capped to the pool), BLAS on one thread. The calling thread's Numba setting and
    the BLAS limits come back on exit. Numba's setting is per thread: enter it in the thread that runs the engine."""
    import numba
    import numpy  # noqa: F401  (loads NumPy's BLAS, so that threadpoolctl finds it)
    from threadpoolctl import threadpool_limits

    start_numba_pool()
    saved_threads = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n or default_threads(), numba.config.NUMBA_NUM_THREADS)))
    blas = threadpool_limits(limits=1, user_api="blas")
    try:
        yield
    finally:
        blas.restore_original_limits()
        numba.set_num_threads(saved_threads)


