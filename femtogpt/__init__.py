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
if "NUMBA_NUM_THREADS" not in os.environ:
    _cores = physical_cores()
    if _cores:
        os.environ["NUMBA_NUM_THREADS"] = str(_cores)


def kernel_fingerprint(package_dir=os.path.dirname(__file__)):
    """8 hex digits hashing the sources of every Numba kernel (ops/*.py, optim.py)."""
    import zlib

    crc = 0
    ops = sorted(n for n in os.listdir(os.path.join(package_dir, "engine", "ops")) if n.endswith(".py"))
    for name in [os.path.join("engine", "ops", n) for n in ops] + [os.path.join("engine", "optim.py")]:
        with open(os.path.join(package_dir, name), "rb") as f:
            crc = zlib.crc32(f.read(), crc)
    return f"{crc:08x}"


# Compiled kernels are cached on disk, in a directory per fingerprint of the kernel sources: Numba's
# own check notices edits to the file that defines a kernel but not to helpers it inlines from other
# files (ops/fastmath.py, ops/dropout.py), and a stale kernel would compute the old function. Beside
# the package when it is writable, else in the user's cache directory.
if "NUMBA_CACHE_DIR" not in os.environ:
    _here = os.path.dirname(__file__)
    _base = (os.path.join(_here, "__pycache__", "numba") if os.access(_here, os.W_OK)
             else os.path.join(os.path.expanduser("~"), ".cache", "femtogpt", "numba"))
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(_base, kernel_fingerprint(_here))

__version__ = "0.1.0"
