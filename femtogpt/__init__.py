"""femtogpt: train, grow and inspect small GPT models on a CPU (NumPy + Numba).

A re-implementation of the Rust femtoGPT fork. Importing the package is cheap: the engine and its
Numba kernels are imported only by the commands that need them.
"""
__version__ = "0.1.0"
