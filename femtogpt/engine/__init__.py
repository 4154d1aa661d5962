"""The engine: reverse-mode autograd over NumPy arrays, the ops (one per file, Numba kernel pairs),
the flat parameter buffer, AdamW, and the thread/BLAS runtime. Knows nothing of models or files."""
