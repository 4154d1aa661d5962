"""Token embedding lookup, plus the fixed positional table added in the same pass.

forward: out[b*T + t] = table[ids[b, t]] + pe[t] (pe: (T, C) or an empty (0, C) array for none).
backward: dtable[v] = sum of dout rows whose id is v. Parallel over column blocks, each block walking
the rows in order, so repeated ids never race and the sum order is fixed.
"""
from numba import prange

from femtogpt.engine.runtime import kernel

from femtogpt.engine.autograd import Function

_COLS = 16  # columns per parallel task in backward


@kernel(parallel=True)
def embedding_forward(out, ids, table, pe):
    # ids: (B, T) ints; table: (V, C); pe: (T, C) or (0, C); out: (B*T, C)
    B, T = ids.shape
    C = table.shape[1]
    use_pe = pe.shape[0] > 0
    for r in prange(B * T):
        v = ids[r // T, r % T]
        for c in range(C):
            out[r, c] = table[v, c] + pe[r % T, c] if use_pe else table[v, c]


@kernel(parallel=True)
def embedding_backward(dtable, dout, ids, cols):
    # dtable: (V, C) written (zeroed here); dout: (B*T, C)
    B, T = ids.shape
    V, C = dtable.shape
    for blk in prange((C + cols - 1) // cols):
        c0 = blk * cols
        c1 = min(C, c0 + cols)
        for v in range(V):
            for c in range(c0, c1):
                dtable[v, c] = 0.0
        for r in range(B * T):
            v = ids[r // T, r % T]
            for c in range(c0, c1):
                dtable[v, c] += dout[r, c]


class Embedding(Function):
    """inputs: ids (B, T) int array (no gradient), table (V, C), pe (T', C) with T' in {0, >= T}."""

    def forward(self, ids, table, pe):
        B, T = ids.shape
        if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
            raise ValueError(f"token id out of range [0, {table.shape[0]})")
        out = self.buffer("out", (B * T, table.shape[1]), table.dtype)
        embedding_forward(out, ids, table, pe)
        self.ids, self.V = ids, table.shape[0]
        return out

    def backward(self, dout):
        dtable = self.grad_target(1, "dtable", (self.V, dout.shape[1]), dout.dtype)
        embedding_backward(dtable, dout, self.ids, _COLS)
        return None, dtable, None
