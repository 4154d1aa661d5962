"""The fork's analysis tools, fixed (reference §1.7, §1.12-1.14): which tokens a head treats alike
(`cluster_tokens`), which text the model finds hard (`chunk_losses`), and the Q/K swap for models
trained before the fork changed attention from K·Qᵀ to Q·Kᵀ (`swap_kq`).
"""
import numpy as np

from femtogpt.model.sampling import log_probs

ROW_BLOCK = 1024  # cluster_tokens: rows of the cosine matrix at a time, so any vocabulary fits in memory


def cluster_tokens(model, tokenizer, top=10, heads=None):
    """[(head, [(cosine, id_a, id_b, token_a, token_b)])]: per head, the `top` most similar token pairs
    (a < b) by the cosine of their embedding slices for that head (columns h*hs..(h+1)*hs of
    token_embedding), most similar first, ties by ids. One matrix product per head (in row blocks).
    Tokens whose slice is all zero have no direction and are left out. Any vocabulary size works,
    a vocabulary of 2 tokens included (the fork panicked below 5)."""
    hp = model.hp
    if hp.attention_width != hp.embedding_degree:
        raise ValueError(f"cluster-tokens splits the embedding into num_heads slices of head_size columns, which "
                         f"needs num_heads * head_size = embedding_degree; this model has {hp.num_heads} * "
                         f"{hp.head_size} != {hp.embedding_degree} (a head was inserted)")
    emb = np.asarray(model.params.values.views["token_embedding"], np.float64)   # (V, E)
    hs = hp.head_size
    out = []
    for h in (range(hp.num_heads) if heads is None else heads):
        x = emb[:, h * hs:(h + 1) * hs]
        norms = np.linalg.norm(x, axis=1)
        alive = np.flatnonzero(norms > 0)
        unit = x[alive] / norms[alive, None]
        best = []  # (cosine, a, b) candidates, at most `top` per row block
        for lo in range(0, len(alive), ROW_BLOCK):
            block = unit[lo:lo + ROW_BLOCK] @ unit.T                      # (rows, n)
            r, c = np.indices(block.shape)
            keep = c > r + lo                                             # pairs a < b only
            values = block[keep]
            ra, cb = r[keep] + lo, c[keep]
            if values.size > top:
                pick = np.argpartition(-values, top - 1)[:top]
                values, ra, cb = values[pick], ra[pick], cb[pick]
            best += [(float(v), int(alive[a]), int(alive[b])) for v, a, b in zip(values, ra, cb)]
        best.sort(key=lambda t: (-t[0], t[1], t[2]))
        out.append((h, [(cos, a, b, tokenizer.decode([a]), tokenizer.decode([b])) for cos, a, b in best[:top]]))
    return out


def chunk_losses(model, tokenizer, tokens, chunk_size, count, seed, progress=None, batch_size=32):
    """[{"loss", "start", "chunk"}] for `count` chunks of `chunk_size` tokens (2..num_tokens + 1) at
    random starts (seeded), sorted by loss, lowest first: the loss is the chunk's mean cross-entropy
    of predicting each token from the ones before it. Batched through the forward pass;
    progress(done, total) after each batch."""
    T = model.hp.num_tokens
    if not 2 <= chunk_size <= T + 1:
        raise ValueError(f"chunk size {chunk_size} must be 2..num_tokens + 1 = {T + 1}")
    if len(tokens) < chunk_size:
        raise ValueError(f"the dataset has {len(tokens)} tokens, fewer than one chunk of {chunk_size}")
    starts = np.random.default_rng([seed, 0x63686B]).integers(0, len(tokens) - chunk_size + 1, size=count)
    losses = np.empty(count)
    for i in range(0, count, batch_size):
        s = starts[i:i + batch_size]
        windows = np.asarray(tokens)[s[:, None] + np.arange(chunk_size)].astype(np.int64)
        logp = log_probs(model.logits(windows[:, :-1]))                       # (b, n - 1, V)
        nll = -np.take_along_axis(logp, windows[:, 1:, None], axis=-1)[..., 0]
        losses[i:i + len(s)] = nll.mean(axis=1)
        if progress is not None:
            progress(min(i + batch_size, count), count)
    order = np.lexsort((starts, losses))
    return [{"loss": float(losses[k]), "start": int(starts[k]),
             "chunk": tokenizer.decode([int(t) for t in tokens[starts[k]:starts[k] + chunk_size]])}
            for k in order]


def swap_kq(checkpoint):
    """Swap every head's query and key weights (head_{l}_{h}_q <-> _k), in the weights and in AdamW's
    moments (the fork swapped the weights only, so a resumed run's moments belonged to the other
    tensor). Internally each layer's fused qkv matrix swaps its first two column blocks. In place;
    twice gives back the original bits."""
    D = checkpoint.hp.attention_width  # qkv_{l} is (E, 3D)
    flats = [checkpoint.model.params.values.views]
    if checkpoint.optimizer is not None:
        from femtogpt.engine.params import FlatBuffers

        for flat in (checkpoint.optimizer.m, checkpoint.optimizer.v):
            flats.append(FlatBuffers(checkpoint.hp, flat.dtype, flat=flat).views)
    for views in flats:
        for l in range(checkpoint.hp.num_layers):
            qkv = views[f"qkv_{l}"]
            q = qkv[:, :D].copy()
            qkv[:, :D] = qkv[:, D:2 * D]
            qkv[:, D:2 * D] = q
    return checkpoint
