"""OpenBLAS's thread count, set at run time.

femtogpt/__init__.py sets OPENBLAS_NUM_THREADS=1 before NumPy loads, but a program that imports
NumPy first (a notebook, a script) has by then started OpenBLAS with a thread per core, and those
threads spin against femtogpt's own: the experiments ran 2x slower that way. So the engine also
sets the count through OpenBLAS's own function, found among the libraries this process has loaded
(NumPy's wheels ship it renamed, e.g. scipy_openblas_set_num_threads64_). Linux only; elsewhere
this does nothing.
"""
import ctypes
import os

_NAMES = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
          "scipy_openblas_set_num_threads", "openblas_set_num_threads64_")


def openblas_paths(maps_lines):
    """The OpenBLAS library paths among /proc/self/maps lines (address perms offset dev inode path;
    the path may hold spaces)."""
    paths = set()
    for line in maps_lines:
        fields = line.split(None, 5)
        if len(fields) == 6 and "openblas" in fields[5].lower():
            paths.add(fields[5].strip().removesuffix(" (deleted)"))
    return sorted(paths)


def _libraries():
    try:
        with open("/proc/self/maps") as f:
            paths = openblas_paths(f)
    except OSError:
        return []
    libs = []
    for path in paths:
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs


def _function(lib, names):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def set_blas_threads(n=None):
    """Set every loaded OpenBLAS to n threads (default: $OPENBLAS_NUM_THREADS, else 1); returns
    how many libraries took it."""
    if n is None:
        value = os.environ.get("OPENBLAS_NUM_THREADS", "1")
        n = int(value) if value.isdigit() and int(value) > 0 else 1
    done = 0
    for lib in _libraries():
        fn = _function(lib, _NAMES)
        if fn is not None:
            fn(ctypes.c_int(n))
            done += 1
    return done


def blas_threads():
    """The thread count of the first loaded OpenBLAS, or None."""
    for lib in _libraries():
        fn = _function(lib, [n.replace("set_", "get_") for n in _NAMES])
        if fn is not None:
            fn.restype = ctypes.c_int
            return int(fn())
    return None
