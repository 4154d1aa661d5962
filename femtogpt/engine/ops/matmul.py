"""Matrix products through NumPy's BLAS, split over our own threads, into persistent buffers.

x: (N, K), w: (K, M) stored row-major [in, out] as in the reference; bias: (M,) or None.
The model passes bias=None and fuses its biases into the next kernel (GELU, residual LayerNorm,
cross-entropy); the bias path is here for standalone use.

Why our own threads: OpenBLAS's worker threads spin after every call and Numba's kernel threads
spin after every parallel loop; on a 2-core machine the two pools steal each other's cores and a
step ran 3-4x slower. So OpenBLAS runs single-threaded (engine/runtime.py's engine_threads() limits
it, whatever the environment says) and `gemm` cuts a big product into row blocks run on a small pool
of Python threads (BLAS releases the GIL), which sleep when idle. The cut depends only on the
shapes, never on the number of threads, so results are the same bits for any thread count; it is
made only for products big enough that a cut costs little (smaller blocks pack the weights again:
four blocks of a (1024, 64) @ (64, 256) product took 10% longer, and of a weight gradient
(64, 1024) @ (1024, 256) 75% longer, than one call). Training runs its batch shards on their own
threads instead (model/gpt.py), so on two cores its products are never cut. `batched_gemm` cuts
only when it has threads to use: each matrix of a stack is its own BLAS call, so any cut gives the
same bits.
"""
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from femtogpt.engine.autograd import Function
from femtogpt.engine.ops.reduce import column_sum, num_chunks
from femtogpt.engine.threads import run_alongside

_MAX_PARTS = 4  # threads of the pool, at most
_GEMM_MAX_PARTS = 2
_GEMM_MIN_PART_ROWS = 256
_GEMM_MIN_PART_FLOPS = 256_000_000
_MIN_PART_FLOPS = 4_000_000  # batched products: smaller parts are not worth a thread hand-off
_pool = None
_pool_lock = threading.Lock()


def _workers():
    return max(1, min(numba.get_num_threads(), _MAX_PARTS))


def _run_blocks(blocks, run_block):
    """Run run_block(lo, hi) for every block, spread over the pool; the calling thread takes a share."""
    global _pool
    parts = len(blocks)
    workers = min(_workers(), parts)

    def run(group):
        for lo, hi in group:
            run_block(lo, hi)

    if workers == 1:
        run(blocks)
        return
    groups = [blocks[w * parts // workers:(w + 1) * parts // workers] for w in range(workers)]
    with _pool_lock:  # shared by the threads of the batch's units, so room for several callers at once
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2 * _MAX_PARTS, thread_name_prefix="femtogpt-gemm")
    run_alongside(_pool, [functools.partial(run, group) for group in groups])


def _blocks(n, parts):
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def gemm(a, b, out):
    """out = a @ b, row blocks in parallel; a: (N, K), b: (K, M), out: (N, M) C-contiguous."""
    N, K = a.shape
    M = b.shape[1]
    parts = int(min(_GEMM_MAX_PARTS, N // _GEMM_MIN_PART_ROWS, 2 * N * K * M // _GEMM_MIN_PART_FLOPS))
    if parts <= 1:
        np.matmul(a, b, out=out)
        return out

    def run_block(lo, hi):
        np.matmul(a[lo:hi], b, out=out[lo:hi])

    _run_blocks(_blocks(N, parts), run_block)
    return out


def batched_gemm(a, b, out):
    """out[i] = a[i] @ b[i] over the leading axis (any further batch axes ride along), blocks of the
    leading axis in parallel. Views with strided rows are fine: BLAS takes them as they are."""
    n = a.shape[0]
    flops = 2 * a.size * b.shape[-1]
    parts = int(min(_workers(), n, flops // _MIN_PART_FLOPS))
    if parts <= 1:
        np.matmul(a, b, out=out)
        return out

    def run_block(lo, hi):
        np.matmul(a[lo:hi], b[lo:hi], out=out[lo:hi])

    _run_blocks(_blocks(n, parts), run_block)
    return out


class MatMul(Function):
    def forward(self, x, w, bias=None):
        out = self.buffer("out", (x.shape[0], w.shape[1]), x.dtype)
        gemm(x, w, out)
        if bias is not None:
            out += bias
        self.x, self.w, self.has_bias = x, w, bias is not None
        return out

    def backward(self, dout):
        need_x, need_w = self.needs_grad[0], self.needs_grad[1]
        dx = dw = db = None
        if need_x:
            dx = self.grad_buffer("dx", self.x.shape, dout.dtype)
            gemm(dout, self.w.T, dx)  # (N, M) @ (M, K)
        if need_w:
            dw = self.grad_target(1, "dw", self.w.shape, dout.dtype)
            gemm(self.x.T, dout, dw)  # (K, N) @ (N, M)
        if self.has_bias and self.needs_grad[2]:
            db = self.grad_target(2, "db", (dout.shape[1],), dout.dtype)
            scratch = self.grad_buffer("db_part", (num_chunks(dout.shape[0]), dout.shape[1]), dout.dtype)
            column_sum(db, dout, scratch)
        return dx, dw, db
