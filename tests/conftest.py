"""The test session runs the engine as the CLI does: inside runtime.engine_threads() (one Numba thread
per physical core, BLAS on one thread, kernels cached outside the package).

NUMBA_CACHE_DIR is set for the session (unless the caller set it, as .ci/run does) before anything
imports Numba, so kernels compiled here and in the subprocesses the tests start share the user's
kernel cache instead of writing into the package.
"""
import os

import pytest

from femtogpt.engine.runtime import engine_threads, kernel_cache_dir

os.environ.setdefault("NUMBA_CACHE_DIR", kernel_cache_dir())


@pytest.fixture(scope="session", autouse=True)
def _engine_runtime():
    with engine_threads():
        yield


@pytest.fixture(scope="session", autouse=True)
def _engine_contract_checks():
    """Checksum what backward reads (femtogpt/engine/autograd.py, contract 4) in every test."""
    from femtogpt.engine import autograd

    autograd.CHECKS = True
