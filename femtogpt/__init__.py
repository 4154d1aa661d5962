"""femtogpt: train, grow and inspect small GPT models on a CPU (NumPy + Numba).

A re-implementation of the Rust femtoGPT fork. Importing the package is cheap: the engine and its
Numba kernels are imported only by the commands that need them.

Thread settings, made here because they only work before NumPy and Numba start their pools: OpenBLAS
runs single-threaded (femtogpt splits large products over its own threads, see ops/matmul.py) and
OpenMP threads sleep instead of spinning between kernels, so the two never fight over the cores.
Numba gets one thread per physical core, not per hyperthread: two threads sharing a core's vector
units only slow each other down. An explicit setting in the environment wins.
"""
import os


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


os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "NUMBA_NUM_THREADS" not in os.environ and physical_cores():
    os.environ["NUMBA_NUM_THREADS"] = str(physical_cores())

# Numba caches compiled kernels beside the sources; an install there may be read-only, where Numba
# would refuse to cache at all. Then use the user's cache directory instead.
if "NUMBA_CACHE_DIR" not in os.environ and not os.access(os.path.dirname(__file__), os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(os.path.expanduser("~"), ".cache", "femtogpt", "numba")

__version__ = "0.1.0"
