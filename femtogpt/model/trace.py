"""Hidden states and attention probabilities of one forward, layer by layer, for looking inside a
model (logit lens, residual RMS, attention entropy). Recorded by a tape runner that copies what the
ops of `block` (model/block.py) produce, so the trace is the model that trains, not a re-implementation.
"""
from dataclasses import dataclass

import numpy as np

from femtogpt.model.tape import TapeRun


@dataclass
class Trace:
    """One forward of ids (B, T), no dropout; arrays per layer, stacked. X_l is the residual stream
    entering layer l (X_L leaves the last one) and N_l = LN(X_l) what layer l reads.
    resid   (L + 1, B, T, C)   X_0 (token embedding + position table, fixed or learned), ..., X_L;
                               X_{l+1} = mid + ffn (rotary turns q and k inside attention: not here)
    normed  (L + 1, B, T, C)   N_0, ..., N_L; N_L = LN_head(X_L): GPT.head(normed[L]) are the logits
    attn    (L, B, T, C)       the attention half's output: o @ proj_w + proj_b
    mid     (L, B, T, C)       M_l = LN(N_l + attn_l)
    ffn     (L, B, T, C)       the feed-forward half's output: gelu(M_l @ ff1_w + ff1_b) @ ff2_w + ff2_b
    probs   (L, B, NH, T, T)   attention probabilities (each row sums to 1, zero above the diagonal);
                               None unless asked for
    """
    resid: np.ndarray
    normed: np.ndarray
    attn: np.ndarray
    mid: np.ndarray
    ffn: np.ndarray
    probs: np.ndarray = None


class TraceRun(TapeRun):
    """A forward-only tape runner that keeps a copy of each hidden state as it is produced."""

    def __init__(self, graph, prog, P, pe, NH, attention=False, rope=None):
        super().__init__(graph, prog, P, pe, rope=rope)
        self.NH, self.attention_wanted = NH, attention
        self.kept = {name: [] for name in ("resid", "normed", "attn", "mid", "ffn", "probs")}

    def _keep(self, name, array):
        self.kept[name].append(array.reshape(self.B, self.T, -1).copy())

    def embed(self, ids):
        self.B, self.T = ids.shape
        x = super().embed(ids)
        self._keep("resid", x.data)
        return x

    def layernorm(self, x, gamma, beta):
        n = super().layernorm(x, gamma, beta)
        self._keep("normed", n.data)
        return n

    def attention(self, l, qkv, drop):
        o = super().attention(l, qkv, drop)
        if self.attention_wanted:  # the op keeps P (B*NH, T, T) for its backward
            self.kept["probs"].append(self.ops["attn"][l].P.reshape(self.B, self.NH, self.T, self.T).copy())
        return o

    def residual_norm(self, site, l, a, b, bias, gamma, beta, drop=None):
        branch = b.data + bias.data  # the half-layer's output, as the fused kernel adds it (no dropout)
        out = super().residual_norm(site, l, a, b, bias, gamma, beta, drop)
        if site == "res_attn":
            self._keep("attn", branch)
            self._keep("mid", out.data)
        else:
            self._keep("ffn", branch)
            self._keep("resid", self.ops[site][l].resid)  # X_{l+1} = m + ffn, as the kernel summed it
            self._keep("normed", out.data)
        return out

    def trace(self):
        kept = {name: np.stack(arrays) if arrays else None for name, arrays in self.kept.items()}
        return Trace(**kept)
