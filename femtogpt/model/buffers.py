"""Every array a training step allocates, listed in one place (llm.c's act_sizes and param_sizes).

`step_buffers` lists what the Functions of `loss_and_grad` allocate (once, then reused every step):
per worker thread and unit size (model/gpt.py cuts a batch into work units of whole sequences, whose
sizes differ by at most one), each op's forward buffers and the backward buffers of the gradient
sets that layers share (model/tape.py). `parameter_buffers` lists the flat arrays of the parameters,
the units' gradients and AdamW. Names are `worker{w}.b{b}.{op}.{buffer}`, with `{op}` = `{site}{l}`
for an op of layer l, `{site}` for an output all layers share, and `{site}.set{s}` for gradient set
s. With one worker the lists are exact (tests/test_buffers.py holds them to what the Functions
really allocate); with more, which worker runs which unit depends on timing, and they are the bound.
Sizes, for one unit of N = b*T rows: C channels, V tokens, NH heads, D = NH*hs the attention width
(C unless a head was inserted), K = ceil(N / 64) row chunks.
"""
import numpy as np

from femtogpt.engine.ops.reduce import num_chunks
from femtogpt.model.gpt import DEFAULT_UNITS, unit_bounds
from femtogpt.model.tape import FORWARD_SHARED, GRAD_SETS, ROTARY_SITE, layer_sites


def unit_sizes(B, units=DEFAULT_UNITS):
    """The batch sizes of the work units `loss_and_grad` cuts a batch of B sequences into."""
    bounds = unit_bounds(B, units)
    return [hi - lo for lo, hi in zip(bounds, bounds[1:])]


def program_buffers(hp, b, T, dtype=np.float32, dropout=False):
    """[(name, shape, dtype)] of one unit's Functions after a training pass on b sequences of T."""
    C, V, NH, L = hp.embedding_degree, hp.vocab_size, hp.num_heads, hp.num_layers
    D = hp.attention_width  # Q, K, V and the attention output: NH * hs (C unless a head was inserted)
    N, K, BH = b * T, num_chunks(b * T), b * NH
    rows = lambda width: (N, width)  # noqa: E731
    norm = [("out", rows(C)), ("mean", (N,)), ("rstd", (N,))]
    residual_norm = norm[:1] + [("resid", rows(C))] + norm[1:]
    forward = {  # site: its forward buffers (each layer's own, except FORWARD_SHARED)
        "qkv": [("out", rows(3 * D))], "attn": [("out", rows(D)), ("P", (BH, T, T))],
        "proj": [("out", rows(C))], "res_attn": residual_norm, "ff1": [("out", rows(4 * C))],
        "gelu": [("out", rows(4 * C))], "ff2": [("out", rows(C))], "res_ffn": residual_norm,
    }
    residual_grads = [("da", rows(C)), ("db", rows(C)), ("pg", (K, C)), ("pb", (K, C)), ("pbias", (K, C))]
    backward = {  # site: its gradient buffers (one per gradient set)
        "qkv": [("dx", rows(C))],
        "attn": [("dqkv", rows(3 * D)), ("dS", (BH, T, T))] + ([("Pd", (BH, T, T))] if dropout else []),
        "proj": [("dx", rows(D))], "res_attn": residual_grads, "ff1": [("dx", rows(C))],
        "gelu": [("dh", rows(4 * C)), ("part", (K, 4 * C))], "ff2": [("dx", rows(4 * C))],
        "res_ffn": residual_grads,
    }
    forward[ROTARY_SITE] = forward["qkv"]   # rotary: the turned qkv rows (attention keeps them)
    backward[ROTARY_SITE] = [("dqkv", forward["qkv"][0][1])]  # their gradient, turned back
    out = [("embed.out", rows(C))] + [(f"ln0.{k}", s) for k, s in norm]
    for site in layer_sites(hp.pos_enc == "rotary"):
        owners = [site] if site in FORWARD_SHARED else [f"{site}{l}" for l in range(L)]
        out += [(f"{op}.{k}", s) for op in owners for k, s in forward[site]]
        out += [(f"{site}.set{g}.{k}", s) for g in range(min(L, GRAD_SETS)) for k, s in backward[site]]
    out += [("head.out", rows(V)), ("ce.probs", rows(V)), ("ce.losses", (N,))]
    out += [("ln0.dx", rows(C)), ("ln0.pg", (K, C)), ("ln0.pb", (K, C)), ("head.dx", rows(C)),
            ("ce.dlogits", rows(V)), ("ce.part", (K, V))]
    return [(name, shape, np.dtype(np.float64 if name == "ce.losses" else dtype)) for name, shape in out]


def step_buffers(hp, B, T=None, dtype=np.float32, dropout=False, units=DEFAULT_UNITS, workers=None):
    """[(name, shape, dtype)] of everything the Functions allocate for loss_and_grad on a (B, T)
    batch cut into `units` (T defaults to hp.num_tokens); `dropout`: whether the step uses dropout
    (p > 0); `workers`: the threads running units (default: one per unit, the most there can be)."""
    T = hp.num_tokens if T is None else T
    sizes = unit_sizes(B, units)
    workers = len(sizes) if workers is None else max(1, min(workers, len(sizes)))
    return [(f"worker{w}.b{b}.{name}", shape, dt) for w in range(workers) for b in sorted(set(sizes))
            for name, shape, dt in program_buffers(hp, b, T, dtype, dropout)]


def parameter_buffers(hp, B, dtype=np.float32, units=DEFAULT_UNITS, workers=None):
    """[(name, shape, dtype)] of the flat parameter arrays: values, gradients (params.grad, written
    by unit 0, and one more per other unit in flight: with one worker, one reused by them all), and
    AdamW's two moments."""
    P = (hp.num_params(),)
    n = len(unit_sizes(B, units))
    in_flight = n - 1 if workers is None or workers > 1 else min(1, n - 1)
    grads = [f"unit_grad{k}" for k in range(1, in_flight + 1)]
    return [(name, P, np.dtype(dtype)) for name in ["values", "grad", *grads, "adam.m", "adam.v"]]


def total_bytes(buffers):
    return sum(int(np.prod(shape)) * dt.itemsize for _, shape, dt in buffers)
