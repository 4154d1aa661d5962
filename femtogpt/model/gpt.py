"""The GPT: parameters, position table, and what training and evaluation ask of the network.

The network itself is defined once, in model/block.py (the reference architecture, layer by layer);
here it runs on the autograd tape (model/tape.py) with the whole batch (B, T) at once. Generation
runs the same definition on a KV cache (model/kv_cache.py); `forward_trace` hands back its hidden
states (model/trace.py).

Training runs the batch as SHARDS shards of whole sequences (`loss_and_grad`), side by side on
their own threads when there are threads for them: each core then keeps its half of the
activations in its own cache, every kernel runs serially (no thread wake-up per op, which cost more
than the work at small sizes), and the only hand-offs are one start and one join per step.
"""
import functools
import time

import numpy as np

from femtogpt.engine.autograd import Graph
from femtogpt.engine.ops.dropout import site_key
from femtogpt.engine.ops.reduce import add_into
from femtogpt.engine.params import Parameters
from femtogpt.engine.threads import run_split
from femtogpt.model.block import network
from femtogpt.model.tape import Program, TapeRun
from femtogpt.model.trace import TraceRun

SHARDS = 2  # fixed (never the thread count), so results do not depend on how many threads run


def sinusoidal_table(T, E, dtype=np.float32):
    """The reference's fixed table: row k, column c, i = c // 2: sin(k / 10000^(2i/E)) for even c,
    cos for odd c. Computed in `dtype`, the engine's precision: float32 as the reference does, float64
    for the float64 engine (a float32 table there would cap checks against the formula at ~1e-7)."""
    f = np.dtype(dtype).type
    k = np.arange(T, dtype=dtype)[:, None]
    i = (np.arange(E) // 2).astype(dtype)[None, :]
    angle = k / np.power(f(10000.0), f(2.0) * i / f(E))
    return np.where(np.arange(E)[None, :] % 2 == 0, np.sin(angle), np.cos(angle)).astype(dtype)


class GPT:
    """The model: hyperparameters, parameters (engine/params.py), the position table, and a Program of
    Function instances (model/tape.py) per batch shape and shard, made on first use."""

    def __init__(self, hp, params=None, dtype=np.float32):
        self.hp = hp.validate()
        self.params = params if params is not None else Parameters(hp, dtype)
        self.dtype = self.params.dtype
        E = hp.embedding_degree
        self.pe = (sinusoidal_table(hp.num_tokens, E, self.dtype) if hp.pos_enc == "absolute"
                   else np.zeros((0, E), self.dtype))
        self._programs = {}

    def _program(self, B, T, shard=0):
        prog = self._programs.get((B, T, shard))
        if prog is None:
            if len(self._programs) > 3 * SHARDS:  # training, eval batches, a tail window: bound memory
                self._programs.clear()
            prog = self._programs[(B, T, shard)] = Program(T, self.hp.num_layers, self.hp.num_heads)
        return prog

    def _check_ids(self, ids):
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.ndim != 2 or not 1 <= ids.shape[1] <= self.hp.num_tokens:
            raise ValueError(f"ids must be (B, T) with 1 <= T <= {self.hp.num_tokens}, got {ids.shape}")
        return ids

    def loss(self, graph, ids, targets, dropout=0.0, key=0, shard=0, denominator=None):
        """Mean cross-entropy (a scalar Tensor on `graph`) of predicting targets (B, T) from ids (B, T).
        dropout applies to the attention probabilities and after each attention projection; `key`
        seeds its masks (same key, same masks). `shard` k > 0 uses its own buffers and gradient
        buffer (see loss_and_grad); `denominator` replaces the number of targets in the mean."""
        ids = self._check_ids(ids)
        prog = self._program(*ids.shape, shard)
        P = self.params.shard_tensors(shard)
        n = network(TapeRun(graph, prog, P, self.pe, float(dropout), int(key)), ids, self.hp.num_layers)
        logits = graph(prog.head, n, P["head_map_weights"])
        targets = np.ascontiguousarray(targets, dtype=np.int64).reshape(-1)
        return graph(prog.ce, logits, P["head_map_bias"], targets, denominator=denominator)

    def loss_and_grad(self, ids, targets, dropout=0.0, key=0, timings=None):
        """The mean cross-entropy (a float) of predicting targets (B, T) from ids (B, T), with its
        gradient written into params.grad. The batch runs as min(SHARDS, B) shards of whole
        sequences, concurrently when there are threads (threads.run_split); their gradients are
        added in shard order. Shard k's dropout masks are keyed by (key, k). If `timings` is a
        dict, timings["forward_end"] gets the perf_counter time at which shard 0's forward ended."""
        def shard(k, ids, targets, denominator):
            graph = Graph()
            loss = self.loss(graph, ids, targets, dropout, site_key(key, k, 0x7368), shard=k,
                             denominator=denominator)
            if timings is not None and k == 0:
                timings["forward_end"] = time.perf_counter()
            graph.backward(loss)
            return float(loss.data)

        losses = self._run_shards(ids, targets, shard)
        for k in range(1, len(losses)):
            add_into(self.params.grad, self.params.shard_grad(k))
        return sum(losses)

    def mean_loss(self, ids, targets):
        """The mean cross-entropy (a float) of predicting targets (B, T) from ids (B, T): no dropout,
        nothing recorded, the batch run as shards like loss_and_grad."""
        def shard(k, ids, targets, denominator):
            return float(self.loss(Graph(record=False), ids, targets, shard=k, denominator=denominator).data)

        return sum(self._run_shards(ids, targets, shard))

    def _run_shards(self, ids, targets, run):
        """[run(k, ids_k, targets_k, denominator) for each shard k], side by side when there are
        threads; the split depends on B only (never on the thread count)."""
        ids = self._check_ids(ids)
        targets = np.ascontiguousarray(targets, dtype=np.int64).reshape(ids.shape)
        B = ids.shape[0]
        n = min(SHARDS, B)
        bounds = [B * k // n for k in range(n + 1)]
        denominator = max(1, int((targets >= 0).sum()))
        return run_split([functools.partial(run, k, ids[bounds[k]:bounds[k + 1]],
                                            targets[bounds[k]:bounds[k + 1]], denominator)
                          for k in range(n)])

    def logits(self, ids):
        """(B, T, V) logits for ids (B, T), no dropout, nothing recorded for backward."""
        ids = self._check_ids(ids)
        B, T = ids.shape
        run = TapeRun(Graph(record=False), self._program(B, T), self.params.tensors, self.pe)
        return self.head(network(run, ids, self.hp.num_layers).data).reshape(B, T, -1)

    def head(self, h):
        """Logits (..., V) of head-normed hidden states h (..., C): h @ head_map_weights + bias."""
        w = self.params.values.views
        out = h.reshape(-1, h.shape[-1]) @ w["head_map_weights"]
        out += w["head_map_bias"]
        return out.reshape(*h.shape[:-1], -1)

    def forward_trace(self, ids, attention=False):
        """The hidden states of every layer for ids (B, T) (a model/trace.py Trace), and with
        `attention` the attention probabilities (L, B, NH, T, T); no dropout, nothing recorded."""
        ids = self._check_ids(ids)
        run = TraceRun(Graph(record=False), self._program(*ids.shape), self.params.tensors, self.pe,
                       self.hp.num_heads, attention)
        network(run, ids, self.hp.num_layers)
        return run.trace()
