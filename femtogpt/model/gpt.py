"""The GPT: parameters, position table, and what training and evaluation ask of the network.

The network itself is defined once, in model/block.py (the reference architecture, layer by layer);
here it runs on the autograd tape (model/tape.py) with the whole batch (B, T) at once. Generation
runs the same definition on a KV cache (model/kv_cache.py); `forward_trace` hands back its hidden
states (model/trace.py).

Training runs the batch as work units of whole sequences (`loss_and_grad`; 2 by default, the
caller may ask for more), taken by the threads as they become free: each core then keeps its unit's
activations in its own cache, kernels run on the unit's share of the threads (no thread wake-up
per op when that is one), and the gradients are added in unit order. The cut and the order depend on
the batch and the unit count only, so the bits never depend on the thread count. More units: less
activation memory (a thread holds one unit's) and work for more cores, at the cost of one more pass
over the gradient per unit.
"""
import threading
import time

import numpy as np

from femtogpt.engine.autograd import Graph
from femtogpt.engine.ops.dropout import site_key
from femtogpt.engine.ops.reduce import add_into
from femtogpt.engine.ops.rotary import rope_tables
from femtogpt.engine.params import Parameters
from femtogpt.engine.threads import run_units
from femtogpt.model.block import network
from femtogpt.model.tape import Program, TapeRun
from femtogpt.model.trace import TraceRun

DEFAULT_UNITS = 2  # work units a batch is cut into: set by the caller, never by the thread count


def unit_bounds(B, units=DEFAULT_UNITS):
    """[0, ..., B]: unit k of a batch of B sequences is sequences bounds[k]:bounds[k + 1]
    (min(units, B) units of whole sequences, sizes differing by at most one)."""
    n = max(1, min(units, B))
    return [B * k // n for k in range(n + 1)]


class _GradSlots:
    """Flat gradient buffers for the units in flight: unit 0 writes params.grad (slot 0), every
    other unit a free slot >= 1, given back once its gradient has been added."""

    def __init__(self):
        self.free, self.count, self.lock = [], 0, threading.Lock()

    def take(self, k):
        if k == 0:
            return 0
        with self.lock:
            if self.free:
                return self.free.pop()
            self.count += 1
            return self.count

    def give_back(self, slot):
        with self.lock:
            self.free.append(slot)


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
    """The model: hyperparameters, parameters (engine/params.py), the position tables, and a Program of
    Function instances (model/tape.py) per batch shape and worker thread, made on first use.
    Positions (hp.pos_enc): none; absolute: `pe`, the fixed sinusoidal table, added to the embedding;
    learned: the parameter pos_embedding (T, E) added instead (`position_table`); rotary: `rope`, the
    (cos, sin) tables of engine/ops/rotary.py, turning each head's queries and keys before attention."""

    def __init__(self, hp, params=None, dtype=np.float32):
        self.hp = hp.validate()
        self.params = params if params is not None else Parameters(hp, dtype)
        self.dtype = self.params.dtype
        E = hp.embedding_degree
        self.pe = (sinusoidal_table(hp.num_tokens, E, self.dtype) if hp.pos_enc == "absolute"
                   else np.zeros((0, E), self.dtype))
        self.rope = rope_tables(hp.num_tokens, hp.head_size, self.dtype) if hp.pos_enc == "rotary" else None
        self._programs = {}

    def position_table(self, P):
        """What the embedding adds, given P, the parameters by internal name (leaves or arrays): the
        learned pos_embedding, else the fixed table `pe` (empty for none and rotary)."""
        return P["pos_embedding"] if self.hp.pos_enc == "learned" else self.pe

    def _program(self, B, T, worker=0):
        prog = self._programs.get((B, T, worker))
        if prog is None:
            if len(self._programs) > 64:  # training, eval batches, a tail window: bound memory
                self._programs.clear()
            prog = self._programs[(B, T, worker)] = Program(T, self.hp.num_layers, self.hp.num_heads,
                                                            rotary=self.rope is not None)
        return prog

    def _check_ids(self, ids):
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.ndim != 2 or not 1 <= ids.shape[1] <= self.hp.num_tokens:
            raise ValueError(f"ids must be (B, T) with 1 <= T <= {self.hp.num_tokens}, got {ids.shape}")
        return ids

    def loss(self, graph, ids, targets, dropout=0.0, key=0, worker=0, grads=0, denominator=None):
        """Mean cross-entropy (a scalar Tensor on `graph`) of predicting targets (B, T) from ids (B, T).
        dropout applies to the attention probabilities and after each attention projection; `key`
        seeds its masks (same key, same masks). `worker` k > 0 runs on its own activation buffers,
        `grads` g > 0 writes the gradients into flat buffer g instead of params.grad (see
        loss_and_grad); `denominator` replaces the number of targets in the mean."""
        ids = self._check_ids(ids)
        prog = self._program(*ids.shape, worker)
        P = self.params.unit_tensors(grads)
        n = network(TapeRun(graph, prog, P, self.position_table(P), float(dropout), int(key), self.rope), ids,
                    self.hp.num_layers)
        logits = graph(prog.head, n, P["head_map_weights"])
        targets = np.ascontiguousarray(targets, dtype=np.int64).reshape(-1)
        return graph(prog.ce, logits, P["head_map_bias"], targets, denominator=denominator)

    def loss_and_grad(self, ids, targets, dropout=0.0, key=0, timings=None, units=DEFAULT_UNITS, group=None):
        """The mean cross-entropy (a float) of predicting targets (B, T) from ids (B, T), with its
        gradient written into params.grad. The batch runs as `units` work units of whole sequences
        (unit_bounds), on as many threads as there are (threads.run_units); unit k's gradient goes to
        a flat buffer of its own (unit 0: params.grad) and the buffers are added into params.grad in
        unit order. Unit k's dropout masks are keyed by (key, k). If `timings` is a dict,
        timings["forward_end"] gets the perf_counter time at which unit 0's forward ended (with a
        group: this process's first unit's, and timings["units_end"] when its units were done).

        With a process `group` (train/distributed.py: several processes training together, each
        with the whole batch) this process runs only its share of the units, and the group adds the
        units' gradients in the same unit order, so every process ends with the bits one process
        would have computed alone."""
        slots = _GradSlots()
        n = len(unit_bounds(len(ids), units)) - 1
        first, end = (0, n) if group is None else group.unit_range(n)
        waiting = []  # slots of this process's units when unit 0 is elsewhere: added after the prefix

        def unit(k, worker, ids, targets, denominator):
            graph = Graph()
            slot = slots.take(k)
            loss = self.loss(graph, ids, targets, dropout, site_key(key, k, 0x7368), worker, slot,
                             denominator)
            if timings is not None and k == first:
                timings["forward_end"] = time.perf_counter()
            graph.backward(loss)
            return float(loss.data), slot

        def fold(k, result):
            if k > 0 and first == 0:
                add_into(self.params.grad, self.params.unit_grad(result[1]))
                slots.give_back(result[1])
            elif k > 0:
                waiting.append(result[1])

        losses = [loss for loss, _ in self._run_units(ids, targets, unit, fold, units, first, end)]
        if group is not None:
            if timings is not None:
                timings["units_end"] = time.perf_counter()
            group.add_gradients(self.params.grad, [self.params.unit_grad(s) for s in waiting], add_into)
            losses = group.all_losses(losses)
        return sum(losses)

    def mean_loss(self, ids, targets):
        """The mean cross-entropy (a float) of predicting targets (B, T) from ids (B, T): no dropout,
        nothing recorded, the batch run as units like loss_and_grad."""
        def unit(k, worker, ids, targets, denominator):
            return float(self.loss(Graph(record=False), ids, targets, worker=worker,
                                   denominator=denominator).data)

        return sum(self._run_units(ids, targets, unit, lambda k, result: None))

    def _run_units(self, ids, targets, run, fold, units=DEFAULT_UNITS, first=0, end=None):
        """[run(k, worker, ids_k, targets_k, denominator) for each unit k in first..end - 1 (default:
        all)], folded in unit order; the split depends on B and `units` only (never on the thread count)."""
        ids = self._check_ids(ids)
        targets = np.ascontiguousarray(targets, dtype=np.int64).reshape(ids.shape)
        bounds = unit_bounds(ids.shape[0], units)
        denominator = max(1, int((targets >= 0).sum()))
        end = len(bounds) - 1 if end is None else end
        return run_units(end - first,
                         lambda j, worker: run(first + j, worker, ids[bounds[first + j]:bounds[first + j + 1]],
                                               targets[bounds[first + j]:bounds[first + j + 1]], denominator),
                         lambda j, result: fold(first + j, result))

    def logits(self, ids):
        """(B, T, V) logits for ids (B, T), no dropout, nothing recorded for backward."""
        ids = self._check_ids(ids)
        B, T = ids.shape
        P = self.params.tensors
        run = TapeRun(Graph(record=False), self._program(B, T), P, self.position_table(P), rope=self.rope)
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
        P = self.params.tensors
        run = TraceRun(Graph(record=False), self._program(*ids.shape), P, self.position_table(P),
                       self.hp.num_heads, attention, rope=self.rope)
        network(run, ids, self.hp.num_layers)
        return run.trace()
