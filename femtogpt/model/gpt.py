"""The reference GPT on the autograd graph, the whole batch (B, T) at once.

Per layer (reference §2.2): N = LN(X); O = causal attention over N @ qkv (dropout on the probs);
M = LN(N + dropout(O @ proj_w + proj_b)); F = gelu(M @ ff1_w + ff1_b) @ ff2_w + ff2_b; X' = M + F.
The residuals start from the normalised inputs N and M, as in the reference. Biases are fused into
the kernel after each GEMM, and X' = M + F goes straight into the next LayerNorm (the next layer's
norm, or the head norm), so one ResidualLayerNorm closes each half-layer.
Logits = LN_head(X_L) @ head_map_weights + head_map_bias; loss = mean cross-entropy.
The Functions are created once per batch shape and reused, so their buffers are too.

Training runs the batch as SHARDS shards of whole sequences (`loss_and_grad`), side by side on
their own threads when there are threads for them: each core then keeps its half of the
activations in its own cache, every kernel runs serially (no thread wake-up per op, which cost more
than the work at small sizes), and the only hand-offs are one start and one join per step.
"""
import functools
import time

import numpy as np

from femtogpt.engine.autograd import Graph
from femtogpt.engine.ops.attention import CausalSelfAttention
from femtogpt.engine.ops.cross_entropy import CrossEntropy
from femtogpt.engine.ops.dropout import site_key
from femtogpt.engine.ops.embedding import Embedding
from femtogpt.engine.ops.gelu import BiasGelu
from femtogpt.engine.ops.layernorm import LayerNorm, ResidualLayerNorm
from femtogpt.engine.ops.matmul import MatMul
from femtogpt.engine.ops.reduce import add_into
from femtogpt.engine.params import Parameters
from femtogpt.engine.threads import run_split

SHARDS = 2  # fixed (never the thread count), so results do not depend on how many threads run


def sinusoidal_table(T, E, dtype=np.float32):
    """The reference's fixed table: row k, column c, i = c // 2: sin(k / 10000^(2i/E)) for even c,
    cos for odd c. Computed in float32 as the reference does."""
    k = np.arange(T, dtype=np.float32)[:, None]
    i = (np.arange(E) // 2).astype(np.float32)[None, :]
    angle = k / np.power(np.float32(10000.0), np.float32(2.0) * i / np.float32(E))
    table = np.where(np.arange(E)[None, :] % 2 == 0, np.sin(angle), np.cos(angle))
    return table.astype(dtype)


class _Program:
    """The Function instances of one forward pass shape (each owns its forward buffers).

    Backward buffers are shared by layers of the same parity: layer l's gradients are consumed
    before the backward reaches layer l - 2, so two sets serve every depth."""

    def __init__(self, T, L, H):
        self.embed, self.ln0 = Embedding(), LayerNorm()
        stores = [{}, {}]

        def per_layer(kind, make):
            fns = [make() for _ in range(L)]
            for l, fn in enumerate(fns):
                fn.grad_store = stores[l % 2].setdefault(kind, {})
            return fns

        self.qkv = per_layer("qkv", MatMul)
        self.attn = per_layer("attn", lambda: CausalSelfAttention(T, H))
        self.proj = per_layer("proj", MatMul)
        self.res_attn = per_layer("res_attn", ResidualLayerNorm)
        self.ff1 = per_layer("ff1", MatMul)
        self.gelu = per_layer("gelu", BiasGelu)
        self.ff2 = per_layer("ff2", MatMul)
        self.res_ffn = per_layer("res_ffn", ResidualLayerNorm)
        self.head, self.ce = MatMul(), CrossEntropy()
        # proj and ff2 outputs are read once, by the residual LayerNorm's forward: one buffer each
        proj_out, ff2_out = {}, {}
        for fn in self.proj:
            fn.forward_store = proj_out
        for fn in self.ff2:
            fn.forward_store = ff2_out


class GPT:
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
            prog = self._programs[(B, T, shard)] = _Program(T, self.hp.num_layers, self.hp.num_heads)
        return prog

    def _hidden(self, g, prog, P, ids, dropout, key):
        """(B*T, E) output of the head LayerNorm for ids (B, T); P: the parameter leaves."""
        L = self.hp.num_layers
        x = g(prog.embed, ids, P["token_embedding"], self.pe)
        x = g(prog.ln0, x, P["norm_0_coeff"], P["norm_0_bias"])
        for l in range(L):
            attn, res_attn = prog.attn[l], prog.res_attn[l]
            attn.p, attn.key = dropout, site_key(key, l, 0)
            res_attn.p, res_attn.key = dropout, site_key(key, l, 1)
            qkv = g(prog.qkv[l], x, P[f"qkv_{l}"])
            o = g(prog.proj[l], g(attn, qkv), P[f"proj_{l}_weights"])
            m = g(res_attn, x, o, P[f"proj_{l}_bias"], P[f"atten_norm_{l}_coeff"], P[f"atten_norm_{l}_bias"])
            h = g(prog.gelu[l], g(prog.ff1[l], m, P[f"feedforward1_{l}_weights"]), P[f"feedforward1_{l}_bias"])
            f = g(prog.ff2[l], h, P[f"feedforward2_{l}_weights"])
            nxt = f"norm_{l + 1}" if l + 1 < L else "head_norm"
            x = g(prog.res_ffn[l], m, f, P[f"feedforward2_{l}_bias"], P[f"{nxt}_coeff"], P[f"{nxt}_bias"])
        return x

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
        x = self._hidden(graph, prog, P, ids, float(dropout), int(key))
        logits = graph(prog.head, x, P["head_map_weights"])
        targets = np.ascontiguousarray(targets, dtype=np.int64).reshape(-1)
        prog.ce.denominator = denominator
        return graph(prog.ce, logits, P["head_map_bias"], targets)

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
        g = Graph(record=False)
        x = self._hidden(g, self._program(B, T), self.params.tensors, ids, 0.0, 0)
        out = x.data @ self.params.values.views["head_map_weights"]
        out += self.params.values.views["head_map_bias"]
        return out.reshape(B, T, -1)
