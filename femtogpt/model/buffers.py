"""Every array a training step allocates, listed in one place (llm.c's act_sizes and param_sizes).

`step_buffers` lists what the Functions of `loss_and_grad` allocate (once, then reused every step):
per batch shard, each op's forward buffers and the backward buffers of the gradient sets that layers
share (model/tape.py). `parameter_buffers` lists the flat arrays of the parameters and AdamW. Names
are `shard{k}.{op}.{buffer}`, with `{op}` = `{site}{l}` for an op of layer l, `{site}` for an output
all layers share, and `{site}.set{s}` for gradient set s. tests/test_buffers.py holds the list to
what the Functions really allocate.
Sizes, for one shard of N = b*T rows: C channels, V tokens, NH heads, K = ceil(N / 64) row chunks.
"""
import numpy as np

from femtogpt.engine.ops.reduce import num_chunks
from femtogpt.model.gpt import SHARDS
from femtogpt.model.tape import FORWARD_SHARED, GRAD_SETS, LAYER_SITES


def shard_sizes(B):
    """The batch sizes of the shards `loss_and_grad` splits a batch of B sequences into."""
    n = min(SHARDS, B)
    return [B * (k + 1) // n - B * k // n for k in range(n)]


def program_buffers(hp, b, T, dtype=np.float32, dropout=False):
    """[(name, shape, dtype)] of one shard's Functions after a training pass on b sequences of T."""
    C, V, NH, L = hp.embedding_degree, hp.vocab_size, hp.num_heads, hp.num_layers
    N, K, BH = b * T, num_chunks(b * T), b * NH
    rows = lambda width: (N, width)  # noqa: E731
    norm = [("out", rows(C)), ("mean", (N,)), ("rstd", (N,))]
    residual_norm = norm[:1] + [("resid", rows(C))] + norm[1:]
    forward = {  # site: its forward buffers (each layer's own, except FORWARD_SHARED)
        "qkv": [("out", rows(3 * C))], "attn": [("out", rows(C)), ("P", (BH, T, T))],
        "proj": [("out", rows(C))], "res_attn": residual_norm, "ff1": [("out", rows(4 * C))],
        "gelu": [("out", rows(4 * C))], "ff2": [("out", rows(C))], "res_ffn": residual_norm,
    }
    residual_grads = [("da", rows(C)), ("db", rows(C)), ("pg", (K, C)), ("pb", (K, C)), ("pbias", (K, C))]
    backward = {  # site: its gradient buffers (one per gradient set)
        "qkv": [("dx", rows(C))],
        "attn": [("dqkv", rows(3 * C)), ("dS", (BH, T, T))] + ([("Pd", (BH, T, T))] if dropout else []),
        "proj": [("dx", rows(C))], "res_attn": residual_grads, "ff1": [("dx", rows(C))],
        "gelu": [("dh", rows(4 * C)), ("part", (K, 4 * C))], "ff2": [("dx", rows(4 * C))],
        "res_ffn": residual_grads,
    }
    out = [("embed.out", rows(C))] + [(f"ln0.{k}", s) for k, s in norm]
    for site in LAYER_SITES:
        owners = [site] if site in FORWARD_SHARED else [f"{site}{l}" for l in range(L)]
        out += [(f"{op}.{k}", s) for op in owners for k, s in forward[site]]
        out += [(f"{site}.set{g}.{k}", s) for g in range(min(L, GRAD_SETS)) for k, s in backward[site]]
    out += [("head.out", rows(V)), ("ce.probs", rows(V)), ("ce.losses", (N,))]
    out += [("ln0.dx", rows(C)), ("ln0.pg", (K, C)), ("ln0.pb", (K, C)), ("head.dx", rows(C)),
            ("ce.dlogits", rows(V)), ("ce.part", (K, V))]
    return [(name, shape, np.dtype(np.float64 if name == "ce.losses" else dtype)) for name, shape in out]


def step_buffers(hp, B, T=None, dtype=np.float32, dropout=False):
    """[(name, shape, dtype)] of everything the Functions allocate for loss_and_grad on a (B, T)
    batch (T defaults to hp.num_tokens); `dropout`: whether the step uses dropout (p > 0)."""
    T = hp.num_tokens if T is None else T
    return [(f"shard{k}.{name}", shape, dt) for k, b in enumerate(shard_sizes(B))
            for name, shape, dt in program_buffers(hp, b, T, dtype, dropout)]


def parameter_buffers(hp, B, dtype=np.float32):
    """[(name, shape, dtype)] of the flat parameter arrays: values, gradients (one more per extra
    batch shard), and AdamW's two moments."""
    P = (hp.num_params(),)
    shards = [f"shard{k}.grad" for k in range(1, len(shard_sizes(B)))]
    return [(name, P, np.dtype(dtype)) for name in ["values", "grad", *shards, "adam.m", "adam.v"]]


def total_bytes(buffers):
    return sum(int(np.prod(shape)) * dt.itemsize for _, shape, dt in buffers)
