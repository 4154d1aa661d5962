"""femtogpt: train, grow and inspect small GPT models on a CPU (NumPy + Numba).

A re-implementation of the Rust femtoGPT fork. Importing the package changes nothing in the process
(no environment variables, no thread counts) and is cheap: the engine and its Numba kernels are
imported only by the commands that need them. Thread counts, BLAS and the kernel cache are set in
one place, femtogpt/engine/runtime.py, which the CLI and the Python API enter around engine work.
"""
__version__ = "0.1.0"
_API = ("load", "init", "Model")  # the Python API (femtogpt/tools/api.py), imported on first use


def __getattr__(name):
    if name in _API:
        from femtogpt.tools import api

        return getattr(api, name)
    raise AttributeError(f"module 'femtogpt' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
