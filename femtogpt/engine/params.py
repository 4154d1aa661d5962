"""All parameters of a model in one flat buffer, with the reference's tensor names as views.

Internally each layer keeps one fused query/key/value matrix `qkv_{l}` (E, 3D), D = H*hs the attention
width (E unless a head was inserted, config.Hyperparameters): columns [0, D) are the queries, [D, 2D)
the keys, [2D, 3D) the values, head h at h*hs..(h+1)*hs in each block; proj_{l}_weights is (D, E). The
reference's per-head tensors `head_{l}_{h}_q/k/v` (E, hs) are column views of it, so files, gradchecks
and comparisons all speak the reference's names while the engine runs one GEMM per layer. The flat
layout lets AdamW update everything in one kernel and makes zeroing the gradients one memset.
"""
import zlib

import numpy as np

from femtogpt.engine.autograd import Tensor

INIT_STD = 0.02  # the reference: N(0, 0.02) for weights, embeddings and LayerNorm gains; biases 0


def internal_layout(hp):
    """[(name, shape)] of the engine's tensors, in buffer order."""
    V, E, L, D = hp.vocab_size, hp.embedding_degree, hp.num_layers, hp.attention_width
    layout = [("token_embedding", (V, E))]
    if hp.pos_enc == "learned":
        layout.append(("pos_embedding", (hp.num_tokens, E)))  # a row per position, added to the embedding
    for l in range(L):
        layout += [
            (f"norm_{l}_coeff", (E,)), (f"norm_{l}_bias", (E,)),
            (f"qkv_{l}", (E, 3 * D)),
            (f"proj_{l}_weights", (D, E)), (f"proj_{l}_bias", (E,)),
            (f"atten_norm_{l}_coeff", (E,)), (f"atten_norm_{l}_bias", (E,)),
            (f"feedforward1_{l}_weights", (E, 4 * E)), (f"feedforward1_{l}_bias", (4 * E,)),
            (f"feedforward2_{l}_weights", (4 * E, E)), (f"feedforward2_{l}_bias", (E,)),
        ]
    layout += [("head_norm_coeff", (E,)), ("head_norm_bias", (E,)),
               ("head_map_weights", (E, V)), ("head_map_bias", (V,))]
    return layout


def reference_names(hp):
    """The reference's tensor names, in a fixed order (the order of init draws and of files)."""
    names = ["token_embedding"] + (["pos_embedding"] if hp.pos_enc == "learned" else [])
    for l in range(hp.num_layers):
        names += [f"norm_{l}_coeff", f"norm_{l}_bias"]
        for h in range(hp.num_heads):
            names += [f"head_{l}_{h}_k", f"head_{l}_{h}_q", f"head_{l}_{h}_v"]
        names += [f"proj_{l}_weights", f"proj_{l}_bias", f"atten_norm_{l}_coeff", f"atten_norm_{l}_bias",
                  f"feedforward1_{l}_weights", f"feedforward1_{l}_bias",
                  f"feedforward2_{l}_weights", f"feedforward2_{l}_bias"]
    return names + ["head_norm_coeff", "head_norm_bias", "head_map_weights", "head_map_bias"]


def reference_views(hp, tensors):
    """{reference name: view} over a dict of internal arrays (parameters, grads or moments)."""
    D, hs = hp.attention_width, hp.head_size
    views = {}
    for name in reference_names(hp):
        if name.startswith("head_") and name[-2] == "_" and name[-1] in "kqv":
            _, l, h, part = name.split("_")
            col = "qkv".index(part) * D + int(h) * hs
            views[name] = tensors[f"qkv_{l}"][:, col:col + hs]
        else:
            views[name] = tensors[name]
    return views


def named_views(hp, flat):
    """{reference name: view} of a flat buffer laid out like the parameters (e.g. AdamW moments)."""
    return reference_views(hp, FlatBuffers(hp, flat=flat).views)


def is_bias(name):
    return name.endswith("_bias")


class FlatBuffers:
    """A flat array (new, or given) and named views of it laid out by `internal_layout`."""

    def __init__(self, hp, dtype=np.float32, flat=None):
        self.layout = internal_layout(hp)
        size = sum(int(np.prod(s)) for _, s in self.layout)
        self.flat = np.zeros(size, dtype) if flat is None else flat
        assert self.flat.shape == (size,)
        self.views, offset = {}, 0
        for name, shape in self.layout:
            n = int(np.prod(shape))
            self.views[name] = self.flat[offset:offset + n].reshape(shape)
            offset += n


class Parameters:
    """Values and gradients of every parameter; `tensors[name]` are the autograd leaves."""

    def __init__(self, hp, dtype=np.float32):
        self.hp, self.dtype = hp, np.dtype(dtype)
        self.values = FlatBuffers(hp, dtype)
        self.grads = FlatBuffers(hp, dtype)
        self.data, self.grad = self.values.flat, self.grads.flat
        self.tensors = {name: Tensor(self.values.views[name], requires_grad=True, name=name,
                                     grad=self.grads.views[name]) for name, _ in self.values.layout}

    @property
    def size(self):
        return self.data.size

    def unit_tensors(self, k):
        """Leaves over the same values whose gradients go to flat buffer k (k = 0: `grad` itself), so
        the work units of a batch can run their backward passes at the same time."""
        if k == 0:
            return self.tensors
        units = self.__dict__.setdefault("_units", {})
        if k not in units:
            grads = FlatBuffers(self.hp, self.dtype)
            units[k] = (grads.flat, {name: Tensor(self.values.views[name], requires_grad=True, name=name,
                                                   grad=grads.views[name]) for name, _ in self.values.layout})
        return units[k][1]

    def unit_grad(self, k):
        """Flat gradient buffer k (after `unit_tensors(k)`)."""
        return self.grad if k == 0 else self._units[k][0]

    def named(self):
        """{reference name: value view}: write into these to load a file."""
        return reference_views(self.hp, self.values.views)

    def named_grads(self):
        return reference_views(self.hp, self.grads.views)

    def init_reference(self, seed, names=None):
        """The reference init, each tensor drawn from its own stream keyed by (seed, name), so a
        tensor's initial value does not depend on how many other tensors the model has. names: only
        these tensors (default: all)."""
        for name, view in self.named().items():
            if names is not None and name not in names:
                continue
            if is_bias(name):
                view[...] = 0.0
            else:
                rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
                view[...] = rng.normal(0.0, INIT_STD, view.shape)
        return self

    def load(self, tensors):
        """Copy {reference name: array} in; every name must be present with the right shape."""
        for name, view in self.named().items():
            if name not in tensors:
                raise KeyError(f"missing tensor {name}")
            src = np.asarray(tensors[name])
            if src.shape != view.shape:
                raise ValueError(f"tensor {name} has shape {list(src.shape)}, expected {list(view.shape)}")
            view[...] = src
        return self
