"""The tape runner: `block` (model/block.py) on the autograd Graph, the whole batch (B*T rows) at once.

A `Program` holds the Function instances of one batch shape, one per site and layer, created once and
reused on every pass (the engine's contract 1: each is called once per pass). Its buffer sharing
follows contracts 3 and 4 of engine/autograd.py:
- backward buffers are shared by layers of the same parity: layer l's gradients are consumed before
  the backward reaches layer l - 2, so two sets serve every depth;
- the outputs of `proj` and `ff2` are read once, by the residual LayerNorm's forward: one buffer each,
  shared by all layers.
model/buffers.py lists every buffer this allocates for a training step.
"""
from femtogpt.engine.ops.attention import CausalSelfAttention
from femtogpt.engine.ops.cross_entropy import CrossEntropy
from femtogpt.engine.ops.dropout import site_key
from femtogpt.engine.ops.embedding import Embedding
from femtogpt.engine.ops.gelu import BiasGelu
from femtogpt.engine.ops.layernorm import LayerNorm, ResidualLayerNorm
from femtogpt.engine.ops.matmul import MatMul
from femtogpt.engine.ops.rotary import Rotary

LAYER_SITES = ("qkv", "attn", "proj", "res_attn", "ff1", "gelu", "ff2", "res_ffn")  # in forward order
ROTARY_SITE = "rope"  # rotary models only: RoPE on the qkv rows, between "qkv" and "attn"
GRAD_SETS = 2  # backward buffer sets, layer l uses set l % GRAD_SETS
FORWARD_SHARED = ("proj", "ff2")  # sites whose output buffer all layers share


def layer_sites(rotary=False):
    """The sites of a layer in forward order: LAYER_SITES, with ROTARY_SITE after "qkv" if rotary."""
    return LAYER_SITES[:1] + (ROTARY_SITE,) + LAYER_SITES[1:] if rotary else LAYER_SITES


class Program:
    """The Function instances of one pass shape: `ops[site][l]` for the layers, and the embedding,
    input norm, head product and loss around them (each with its own buffers)."""

    def __init__(self, T, L, NH, rotary=False):
        self.embed, self.ln0, self.head, self.ce = Embedding(), LayerNorm(), MatMul(), CrossEntropy()
        make = {"qkv": MatMul, "attn": lambda: CausalSelfAttention(T, NH), "proj": MatMul,
                "res_attn": ResidualLayerNorm, "ff1": MatMul, "gelu": BiasGelu, "ff2": MatMul,
                "res_ffn": ResidualLayerNorm, ROTARY_SITE: lambda: Rotary(T)}
        grad_sets = [{} for _ in range(GRAD_SETS)]
        self.ops, self.sites = {}, layer_sites(rotary)
        for site in self.sites:
            fns = self.ops[site] = [make[site]() for _ in range(L)]
            for l, fn in enumerate(fns):
                fn.grad_store = grad_sets[l % GRAD_SETS].setdefault(site, {})
            if site in FORWARD_SHARED:
                shared = {}
                for fn in fns:
                    fn.forward_store = shared

    def functions(self):
        """Every Function instance, in forward order."""
        yield self.embed
        yield self.ln0
        for l in range(len(self.ops["qkv"])):
            for site in self.sites:
                yield self.ops[site][l]
        yield self.head
        yield self.ce


class TapeRun:
    """The runner of `block` on a Graph (see model/block.py): each op is the program's Function for
    its site and layer; P maps names to parameter leaves; pe the position table added to the
    embedding (model/gpt.py GPT.position_table: fixed, a parameter leaf, or empty); rope the (cos, sin)
    tables of a rotary model (None otherwise); dropout p, its masks keyed by `key`."""

    def __init__(self, graph, prog, P, pe, dropout=0.0, key=0, rope=None):
        self.g, self.prog, self.ops, self.P, self.pe = graph, prog, prog.ops, P, pe
        self.p, self.key, self.rope = dropout, key, rope

    def _dropout(self, l, drop):
        """The call settings of dropout site `drop` of layer l (none: the op's defaults, p = 0)."""
        if drop is None or self.p == 0.0:
            return {}
        return {"p": self.p, "key": site_key(self.key, l, drop)}

    def embed(self, ids):
        return self.g(self.prog.embed, ids, self.P["token_embedding"], self.pe)

    def layernorm(self, x, gamma, beta):
        return self.g(self.prog.ln0, x, gamma, beta)

    def matmul(self, site, l, x, w):
        return self.g(self.ops[site][l], x, w)

    def attention(self, l, qkv, drop):
        if self.rope is not None:  # rotary: Q and K rotated by position first (engine/ops/rotary.py)
            qkv = self.g(self.ops[ROTARY_SITE][l], qkv, *self.rope)
        return self.g(self.ops["attn"][l], qkv, **self._dropout(l, drop))

    def rows(self, l, x):
        return x  # every row goes on

    def residual_norm(self, site, l, a, b, bias, gamma, beta, drop=None):
        return self.g(self.ops[site][l], a, b, bias, gamma, beta, **self._dropout(l, drop))

    def gelu(self, l, h, bias):
        return self.g(self.ops["gelu"][l], h, bias)
