"""Token embedding lookup, plus the positional table added in the same pass.

forward: out[b*T + t] = table[ids[b, t]] + pe[t] (pe: (T', C) with T' >= T, or an empty (0, C) array
for none and rotary). pe is the fixed sinusoidal table (absolute) or the parameter pos_embedding
(learned).
backward: dtable[v] = sum of dout rows whose id is v. Parallel over column blocks, each block walking
the rows in order, so repeated ids never race and the sum order is fixed. When pe wants a gradient
(learned): dpe[t] = sum over b of dout[b*T + t] in b order, rows t >= T zero.
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


@kernel(parallel=True)
def position_backward(dpe, dout, T):
    # dpe: (T', C) written; dout: (B*T, C); each row t owned by one iteration, summed in b order
    Tp, C = dpe.shape
    B = dout.shape[0] // T
    for t in prange(Tp):
        for c in range(C):
            dpe[t, c] = 0.0
        if t < T:
            for b in range(B):
                for c in range(C):
                    dpe[t, c] += dout[b * T + t, c]


class Embedding(Function):
    """inputs: ids (B, T) int array (no gradient), table (V, C), pe (T', C) with T' in {0, >= T}
    (a gradient only when it is a Tensor that wants one: learned)."""

    def forward(self, ids, table, pe):
        B, T = ids.shape
        if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
            raise ValueError(f"token id out of range [0, {table.shape[0]})")
        out = self.buffer("out", (B * T, table.shape[1]), table.dtype)
        embedding_forward(out, ids, table, pe)
        self.ids, self.V, self.Tpe = ids, table.shape[0], pe.shape[0]
        return out

    def backward(self, dout):
        dtable = self.grad_target(1, "dtable", (self.V, dout.shape[1]), dout.dtype)
        embedding_backward(dtable, dout, self.ids, _COLS)
        dpe = None
        if len(self.needs_grad) > 2 and self.needs_grad[2]:  # learned: pe is the parameter pos_embedding
            dpe = self.grad_target(2, "dpe", (self.Tpe, dout.shape[1]), dout.dtype)
            position_backward(dpe, dout, self.ids.shape[1])
        return None, dtable, dpe
