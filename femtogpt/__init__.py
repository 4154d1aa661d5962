"""femtogpt: train, grow and inspect small GPT models on a CPU (NumPy + Numba).

A re-implementation of the Rust femtoGPT fork. Importing the package changes nothing in the process
(no environment variables, no thread counts) and is cheap: the engine and its Numba kernels are
imported only by the commands that need them. Thread counts, BLAS and the kernel cache are set in
one place, femtogpt/engine/runtime.py, which the CLI and the Python API enter around engine work.
"""
__version__ = "0.1.0"
