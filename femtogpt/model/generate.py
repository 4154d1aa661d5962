"""Text generation: an incremental forward with a KV cache, the sampler, and the `generate` loop.

`Generator(model).feed(ids)` runs only the new positions through the network (the same math and, where
possible, the same kernels as model.py `_hidden`), appending each layer's keys and values to a
`KVCache`; a new token costs O(L E^2 + L T E) instead of a full T-length forward. A batch of new
positions (a prompt, a re-prefill) goes through in one pass: GEMMs over its rows, not a token loop.

The context window and sliding (deliberately not the reference's slide-by-one, see `Generator`):
the window holds at most T tokens at positions 0..n-1 (absolute PE uses the position within the
window, as the reference's `infer` does). When a new token would overflow it, the window is cut to
its last `keep` tokens (default T // 2, the new one included) and re-prefilled in one batched pass,
then grows one position per token again. Sliding by one (keep = T) re-assigns every position and
changes every cached hidden state (also with pos_enc none: upper layers see the dropped tokens), so
it would cost a full forward per token; keep = T // 2 costs about one batched position per token,
amortised, while always giving the model at least T/2 tokens of context. Pass keep=T for the
reference's exact behaviour.

Sampling order (documented for users): logits / temperature -> top-k -> top-p -> sample.
Temperature 0 is greedy (argmax, the lowest id on ties); top_k 0 and top_p 1.0 are off. This is the
usual softmax sampling, not the reference's `select` (a dice in [0, temperature) over sorted
probabilities); see femtogpt-fork.md section 1.3.
"""
import numba
import numpy as np

from femtogpt.engine.ops.gelu import BiasGelu
from femtogpt.engine.ops.kv_attention import kv_attention_forward
from femtogpt.engine.ops.layernorm import LayerNorm, ResidualLayerNorm

_PARALLEL_ROWS = 4  # feeds of fewer new rows run the Numba kernels on the calling thread only


class KVCache:
    """Keys and values of every layer for the positions of the current window."""

    def __init__(self, L, T, C, dtype):
        self.k = np.zeros((L, T, C), dtype)  # (L, T, C): layer l, position t, head h at h*hs
        self.v = np.zeros((L, T, C), dtype)
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
        self.cache = KVCache(self.L, self.T, self.C, model.dtype)
        self._ops = _Ops(self.L)  # dropout p = 0 in each: inference
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
        Slides the window (see the class docstring) when it would exceed T; more than T ids at once
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
            self._last = self._forward(np.asarray(new, np.int64), p0)
        finally:
            numba.set_num_threads(threads)
        return self._last.copy()

    def _forward(self, ids, p0):
        """Run the rows of ids, at window positions p0..p0+n-1, through every layer; fill the cache."""
        w, C, L, n, ops = self.w, self.C, self.L, len(ids), self._ops
        x = w["token_embedding"][ids]                            # (n, C)
        if self.model.pe.shape[0]:
            x += self.model.pe[p0:p0 + n]                        # position within the window
        h = ops.ln0.forward(x, w["norm_0_coeff"], w["norm_0_bias"])  # N_0
        for l in range(L):
            qkv = h @ w[f"qkv_{l}"]                              # (n, 3C): [Q | K | V]
            self.cache.k[l, p0:p0 + n] = qkv[:, C:2 * C]
            self.cache.v[l, p0:p0 + n] = qkv[:, 2 * C:]
            if l == L - 1 and n > 1:  # past the last K/V, only the newest row counts
                h, qkv, p0, n = h[-1:], qkv[-1:], p0 + n - 1, 1
            att = np.empty((n, C), h.dtype)
            kv_attention_forward(att, qkv, self.cache.k[l], self.cache.v[l], p0, self.NH)
            m = ops.res_attn[l].forward(h, att @ w[f"proj_{l}_weights"], w[f"proj_{l}_bias"],
                                        w[f"atten_norm_{l}_coeff"], w[f"atten_norm_{l}_bias"])
            # m = LN(N + O W + b): the residual from the normalised input, as in the reference
            u = ops.gelu[l].forward(m @ w[f"feedforward1_{l}_weights"], w[f"feedforward1_{l}_bias"])
            nxt = f"norm_{l + 1}" if l + 1 < L else "head_norm"
            h = ops.res_ffn[l].forward(m, u @ w[f"feedforward2_{l}_weights"], w[f"feedforward2_{l}_bias"],
                                       w[f"{nxt}_coeff"], w[f"{nxt}_bias"])
        self.cache.length = p0 + n
        return h[-1] @ w["head_map_weights"] + w["head_map_bias"]  # (V,) in the model's dtype


class _Ops:
    """The model's Function instances used forward-only, one per layer and site: each owns its
    output buffer (reused while the row count stays the same), so no two live results share one."""

    def __init__(self, L):
        self.ln0 = LayerNorm()
        self.res_attn = [ResidualLayerNorm() for _ in range(L)]
        self.gelu = [BiasGelu() for _ in range(L)]
        self.res_ffn = [ResidualLayerNorm() for _ in range(L)]


def sample_next(logits, temperature=1.0, top_k=0, top_p=1.0, rng=None):
    """One token id from logits (V,): logits / temperature -> top-k -> top-p -> sample.

    temperature 0: greedy, argmax with the lowest id winning ties (top_k, top_p, rng unused).
    top_k > 0 keeps exactly the k largest logits (ties broken towards lower ids); 0 is off.
    top_p < 1 keeps the smallest set of most probable tokens (after top-k, renormalised) whose mass
    is >= top_p (ties broken towards lower ids; top_p 0 keeps one token); 1.0 is off.
    rng: a np.random.Generator (seeded for reproducible output); None draws a fresh one.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if np.isnan(z).any():
        raise ValueError("logits contain NaN")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if not 0.0 <= top_p <= 1.0:
        raise ValueError(f"top_p must be in [0, 1], got {top_p}")
    if temperature == 0:
        return int(np.argmax(z))
    z = z / temperature
    if 0 < top_k < z.size or top_p < 1.0:
        order = np.argsort(-z, kind="stable")  # descending logit, lower id first on ties
        if 0 < top_k < z.size:
            order = order[:top_k]
    else:
        order = np.arange(z.size)              # nothing to cut: id order, no sort
    zk = z[order]
    p = np.exp(zk - zk.max())
    p /= p.sum()
    if top_p < 1.0:
        cum = np.cumsum(p)                     # order is descending, so this is the top mass
        n = int(np.searchsorted(cum, top_p - 1e-12, side="left")) + 1  # tolerance for rounding
        order, p = order[:n], p[:n]
        p = p / p.sum()
    if rng is None:
        rng = np.random.default_rng()
    cum = np.cumsum(p)
    i = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
    return int(order[min(i, order.size - 1)])


def generate(model, prompt_ids, count, temperature=1.0, top_k=0, top_p=1.0, seed=None,
             on_token=None, start_id=0, keep=None):
    """`count` new token ids continuing prompt_ids, with a KV cache.

    A prompt longer than T keeps its last T tokens. An empty prompt starts from the single token
    `start_id` (default 0, the reference's padding id; a CLI should pass e.g. its newline id), which
    is context only and not part of the result. on_token(id) is called as each token is produced
    (streaming). seed: an int (or a np.random.Generator) for reproducible sampling. keep: the
    sliding policy, see `Generator`.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    gen = Generator(model, keep=keep)
    prompt = [int(t) for t in prompt_ids][-model.hp.num_tokens:]
    out = []
    if count == 0:
        return out
    logits = gen.feed(prompt if prompt else [int(start_id)])  # one batched prefill
    for i in range(count):
        nxt = sample_next(logits, temperature, top_k, top_p, rng)
        out.append(nxt)
        if on_token is not None:
            on_token(nxt)
        if i + 1 < count:
            logits = gen.feed([nxt])
    return out


def empty_prompt_start(tokenizer):
    """The id to start from when there is no prompt: the newline token if it is one token, else 0."""
    newline = [int(i) for i in tokenizer.encode("\n")]
    return newline[0] if len(newline) == 1 else 0


def sample_text(model, tokenizer, count, temperature=0.8, seed=None, prompt=""):
    """`count` tokens sampled after `prompt` (empty: from a newline), decoded to text."""
    ids = [int(i) for i in tokenizer.encode(prompt)]
    out = generate(model, ids, count, temperature=temperature, seed=seed,
                   start_id=empty_prompt_start(tokenizer) if not ids else 0)
    return tokenizer.decode(out)
