"""Matrix product x @ w (+ bias) through NumPy's BLAS, into persistent output buffers.

x: (N, K), w: (K, M) stored row-major [in, out] as in the reference; bias: (M,) or None.
The model passes bias=None and fuses its biases into the next kernel (GELU, residual LayerNorm,
cross-entropy); the bias path is here for standalone use.
"""
import numpy as np

from femtogpt.autograd import Function
from femtogpt.ops.reduce import column_sum, num_chunks


class MatMul(Function):
    def forward(self, x, w, bias=None):
        out = self.buffer("out", (x.shape[0], w.shape[1]), x.dtype)
        np.matmul(x, w, out=out)
        if bias is not None:
            out += bias
        self.x, self.w, self.has_bias = x, w, bias is not None
        return out

    def backward(self, dout):
        need_x, need_w = self.needs_grad[0], self.needs_grad[1]
        dx = dw = db = None
        if need_x:
            dx = self.buffer("dx", self.x.shape, dout.dtype)
            np.matmul(dout, self.w.T, out=dx)  # (N, M) @ (M, K)
        if need_w:
            dw = self.buffer("dw", self.w.shape, dout.dtype)
            np.matmul(self.x.T, dout, out=dw)  # (K, N) @ (N, M)
        if self.has_bias and self.needs_grad[2]:
            db = self.buffer("db", (dout.shape[1],), dout.dtype)
            scratch = self.buffer("db_part", (num_chunks(dout.shape[0]), dout.shape[1]), dout.dtype)
            column_sum(db, dout, scratch)
        return dx, dw, db
