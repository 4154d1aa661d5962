"""Compile every training kernel once on a tiny model, so the first real step is not a surprise.

Numba compiles on first call and caches to disk (cache=True); the CLI runs this under a spinner so a
cold start shows progress instead of silence. The tiny model uses the same array types as a real
one, so the real model then finds every kernel compiled.
"""
import numpy as np


def warm_up(spinner=False):
    """Compile (or load from the cache) every training kernel; `spinner`: show a rich spinner
    meanwhile (for a terminal)."""
    if spinner:
        from rich.console import Console

        with Console().status("Compiling kernels (first run only, under a minute; later runs use the cache)..."):
            _compile()
    else:
        _compile()


def _compile():
    from femtogpt.config import Hyperparameters, OptimizerConfig
    from femtogpt.train.evaluate import evaluate_tokens
    from femtogpt.model.gpt import GPT
    from femtogpt.engine.optim import AdamW
    from femtogpt.engine.params import Parameters
    from femtogpt.train.step import train_step
    import numba

    hp = Hyperparameters(vocab_size=5, num_tokens=4, embedding_degree=4, num_layers=1, num_heads=2)
    model = GPT(hp, Parameters(hp).init_reference(0))
    ids = np.zeros((2, 4), np.int64)
    # on one thread, the batch's units compile one after another on this thread: a Ctrl-C then stops the
    # warm-up within a kernel's compilation, instead of waiting for a unit thread to compile them all
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        train_step(model, AdamW(model.params, OptimizerConfig()), ids, ids, dropout=0.1)
        evaluate_tokens(model, np.zeros(9, np.int64))
    finally:
        numba.set_num_threads(threads)
