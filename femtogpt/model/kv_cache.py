"""Incremental forward with a KV cache: `Generator(model).feed(ids)` runs only the new positions.

It runs the same layer definition as training (model/block.py) through a cache runner: forward-only
calls of the same fused ops, plain NumPy products, and attention of the new rows over the cached keys
and values (engine/ops/kv_attention.py), each layer's new keys and values appended to a `KVCache`.
A new token costs O(L E^2 + L T E) instead of a full T-length forward. A batch of new positions (a
prompt, a re-prefill) goes through in one pass: GEMMs over its rows, not a token loop.

The context window and sliding (deliberately not the reference's slide-by-one, see `Generator`):
the window holds at most T tokens at positions 0..n-1 (absolute PE uses the position within the
window, as the reference's `infer` does). When a new token would overflow it, the window is cut to
its last `keep` tokens (default T // 2, the new one included) and re-prefilled in one batched pass,
then grows one position per token again. Sliding by one (keep = T) re-assigns every position and
changes every cached hidden state (also with pos_enc none: upper layers see the dropped tokens), so
it would cost a full forward per token; keep = T // 2 costs about one batched position per token,
amortised, while always giving the model at least T/2 tokens of context. Pass keep=T for the
reference's exact behaviour (`infer --window slide`). Learned PE adds pos_embedding's rows of the
window positions; rotary turns the new rows' queries and keys by their window positions before the
keys go into the cache.
"""
import numba
import numpy as np

from femtogpt.engine.ops.gelu import BiasGelu
from femtogpt.engine.ops.kv_attention import kv_attention_forward
from femtogpt.engine.ops.layernorm import LayerNorm, ResidualLayerNorm
from femtogpt.engine.ops.rotary import rotary_forward
from femtogpt.model.block import network

_PARALLEL_ROWS = 4  # feeds of fewer new rows run the Numba kernels on the calling thread only


class KVCache:
    """Keys and values of every layer for the positions of the current window."""

    def __init__(self, L, T, D, dtype):
        self.k = np.zeros((L, T, D), dtype)  # (L, T, D): layer l, position t, head h at h*hs; D = H*hs
        self.v = np.zeros((L, T, D), dtype)
        self.length = 0                      # positions 0..length-1 are valid

    def clear(self):
        self.length = 0


class Generator:
    """Incremental forward of one sequence. `feed(ids)` returns the logits (V,) of the last position.

    keep: tokens left in the window after a slide, the newest included (1 <= keep <= T; default
    T // 2). keep = T slides by one token, exactly like the reference, at a full forward per token.
    """

    def __init__(self, model, keep=None):
        self.model, hp = model, model.hp
        self.T, self.L, self.NH = hp.num_tokens, hp.num_layers, hp.num_heads
        self.C, self.V = hp.embedding_degree, hp.vocab_size
        self.keep = max(1, self.T // 2) if keep is None else int(keep)
        if not 1 <= self.keep <= self.T:
            raise ValueError(f"keep must be in [1, {self.T}], got {keep}")
        self.w = model.params.values.views  # live views: weights loaded later are picked up
        self.D = hp.attention_width  # the width of Q, K, V and the attention output (E unless grown)
        self.cache = KVCache(self.L, self.T, self.D, model.dtype)
        # forward-only Function instances, one per site and layer: each owns its output buffer
        # (reused while the row count stays the same), so no two live results share one
        self.ln0 = LayerNorm()
        self.ops = {site: [make() for _ in range(self.L)]
                    for site, make in (("res_attn", ResidualLayerNorm), ("gelu", BiasGelu),
                                       ("res_ffn", ResidualLayerNorm))}
        self._run = _CacheRun(self)
        self._tokens = []
        self._last = None

    @property
    def tokens(self):
        """The token ids of the current window, oldest first (its length is the next position)."""
        return list(self._tokens)

    def reset(self):
        self.cache.clear()
        self._tokens, self._last = [], None

    def feed(self, token_ids):
        """Append token ids to the window and return the logits (V,) of the newest position (the
        model's dtype: float32, or float64 for a float64 model).
        Slides the window (see the module docstring) when it would exceed T; more than T ids at once
        keep their last T."""
        new = [int(t) for t in np.asarray(token_ids, dtype=np.int64).reshape(-1)]
        if any(not 0 <= t < self.V for t in new):
            raise ValueError(f"token id out of range [0, {self.V})")
        if not new:
            if self._last is None:
                raise ValueError("feed() needs at least one token: the window is empty")
            return self._last.copy()
        if len(self._tokens) + len(new) > self.T:
            window = (self._tokens + new)[-max(self.keep, min(len(new), self.T)):]
            self.reset()
            new = window
        p0 = len(self._tokens)
        self._tokens += new
        threads = numba.get_num_threads()
        if len(new) < _PARALLEL_ROWS:  # a few rows: handing them to the thread pool costs more
            numba.set_num_threads(1)   # than it saves, and much more when the cores are busy
        try:
            h = network(self._run.at(len(new), p0), np.asarray(new, np.int64), self.L)
            self.cache.length = p0 + len(new)
            self._last = h[-1] @ self.w["head_map_weights"] + self.w["head_map_bias"]  # (V,)
        finally:
            numba.set_num_threads(threads)
        return self._last.copy()


class _CacheRun:
    """The runner of `block` (model/block.py) for a generator's n new rows at window positions
    p0..p0+n-1 (set by `at`): forward only, no dropout; attention over the cache, which it extends.
    Past the last layer's keys and values only the newest row counts, so that layer runs it alone
    (`rows`)."""

    def __init__(self, gen):
        self.P, self.cache, self.ops, self.ln0 = gen.w, gen.cache, gen.ops, gen.ln0
        self.pe, self.rope = gen.model.position_table(gen.w), gen.model.rope  # live views: see Generator
        self.D, self.NH, self.L = gen.D, gen.NH, gen.L

    def at(self, n, p0):
        self.n, self.p0 = n, p0
        self.newest_only = self.L - 1 if n > 1 else -1  # the layer that runs only the newest row
        return self

    def embed(self, ids):
        x = self.P["token_embedding"][ids]                   # (n, C)
        if self.pe.shape[0]:
            x += self.pe[self.p0:self.p0 + self.n]           # the position within the window
        return x

    def layernorm(self, x, gamma, beta):
        return self.ln0.forward(x, gamma, beta)

    def matmul(self, site, l, x, w):
        return x @ w

    def attention(self, l, qkv, drop):
        cache, D, p0, n = self.cache, self.D, self.p0, self.n
        if self.rope is not None:  # rotary: the new rows' Q and K turned by their window positions
            turned = np.empty_like(qkv)
            rotary_forward(turned, qkv, *self.rope, n, p0)
            qkv = turned
        cache.k[l, p0:p0 + n] = qkv[:, D:2 * D]
        cache.v[l, p0:p0 + n] = qkv[:, 2 * D:]
        if l == self.newest_only:
            qkv, p0, n = qkv[-1:], p0 + n - 1, 1
        out = np.empty((n, D), qkv.dtype)
        kv_attention_forward(out, qkv, cache.k[l], cache.v[l], p0, self.NH)
        return out

    def rows(self, l, x):
        return x[-1:] if l == self.newest_only else x

    def residual_norm(self, site, l, a, b, bias, gamma, beta, drop=None):
        return self.ops[site][l].forward(a, b, bias, gamma, beta)

    def gelu(self, l, h, bias):
        return self.ops["gelu"][l].forward(h, bias)
