"""The tape: a Graph records Function calls on Tensors and runs their backward in reverse order.

Design for speed and memory (no allocation per step):
- A Function instance owns its forward buffers (outputs and what backward needs) and reuses them
  while the shapes stay the same, so the model creates its Functions once and calls each of them
  once per pass.
- An output that backward never reads (the attention projection and the second FFN product, which
  the residual LayerNorm consumes and keeps its own sum of) may live in a `forward_store` shared by
  all layers.
- Backward buffers (input gradients and scratch) come from `grad_buffer`, a store that Functions of
  different layers may share: a layer's gradients are dead once the backward has moved two layers
  further down, so the model gives even and odd layers one store each instead of one per layer.
- Backward returns one gradient array per input (or None). The Graph hands the first gradient of an
  activation over by reference and adds later ones in place.
- Parameters are leaf Tensors whose `.grad` is a view of the flat gradient buffer. For those the
  Graph offers the view in `fn.grad_targets[i]`: a Function may write the gradient straight into
  it (and return it), saving a parameter-sized buffer and a pass. A leaf's first gradient in a
  pass overwrites, later ones add, and leaves that got none are zeroed at the end, so the caller
  never needs to zero the buffer.
Non-Tensor inputs (token ids, targets) are passed to forward as they are and get no gradient.

Small ops run their kernels on one thread (see femtogpt/engine/threads.py); this changes speed only.
"""
import threading
import time

import numpy as np

from femtogpt.engine.threads import Threads

_profile = None  # an OpProfile while profiling (femtogpt bench --profile), else None


class OpProfile:
    """Seconds spent in each op's forward and backward, by op class, summed over every call and over
    the threads of the batch shards (each call's wall time on its own thread; the shards overlap, so
    the sum exceeds the step's wall time)."""

    def __init__(self):
        self.seconds = {}
        self._lock = threading.Lock()

    def add(self, key, seconds):
        with self._lock:
            self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def __enter__(self):
        global _profile
        _profile = self
        return self

    def __exit__(self, *exc):
        global _profile
        _profile = None


def _timed(fn, direction, call, *args):
    if _profile is None:
        return call(*args)
    t0 = time.perf_counter()
    try:
        return call(*args)
    finally:
        _profile.add(f"{type(fn).__name__}.{direction}", time.perf_counter() - t0)


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "name", "is_leaf")

    def __init__(self, data, requires_grad=False, name=None, grad=None):
        self.data = data
        self.requires_grad = requires_grad
        self.name = name
        self.grad = grad
        self.is_leaf = grad is not None  # a parameter: its gradient lives in a preset buffer

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Tensor({self.name or ''} shape={self.data.shape} dtype={self.data.dtype})"


def _get_buffer(store, key, shape, dtype, zero):
    buf = store.get(key)
    if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
        buf = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
        store[key] = buf
    elif zero:
        buf.fill(0)
    return buf


class Function:
    """One op. Subclasses implement forward(*inputs) -> array and backward(dout) -> tuple of grads.

    `needs_grad[i]` tells backward which inputs want a gradient (skip the work for the others);
    `grad_targets[i]` is an array to write input i's gradient into, or None (see the module doc).
    backward must not modify `dout`.
    """

    needs_grad = ()
    grad_targets = ()
    grad_store = None  # a dict shared with other Functions, or None for a private one
    forward_store = None  # likewise for forward arrays: only for outputs dead once consumed

    def buffer(self, key, shape, dtype, zero=False):
        """A persistent forward array per key, reallocated only when shape or dtype change."""
        store = self.forward_store if self.forward_store is not None else self.__dict__.setdefault("_buffers", {})
        return _get_buffer(store, key, shape, dtype, zero)

    def grad_buffer(self, key, shape, dtype, zero=False):
        """A backward array per key, from the (possibly shared) gradient store."""
        if self.grad_store is None:
            self.grad_store = {}
        return _get_buffer(self.grad_store, key, shape, dtype, zero)

    def grad_target(self, i, key, shape, dtype):
        """Where to write input i's gradient: the parameter's own buffer if offered, else ours."""
        target = self.grad_targets[i] if i < len(self.grad_targets) else None
        return target if target is not None else self.grad_buffer(key, shape, dtype)

    def forward(self, *inputs):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError


class Graph:
    """Records calls while any input needs a gradient; `backward(loss)` replays them in reverse."""

    def __init__(self, record=True):
        self.tape = []
        self.record = record  # False: forward only (evaluation, sampling)

    def __call__(self, fn, *inputs):
        arrays = [t.data if isinstance(t, Tensor) else t for t in inputs]
        needs = tuple(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        fn.needs_grad = needs
        threads = Threads()
        threads.set_for(max((a.size for a in arrays if isinstance(a, np.ndarray)), default=0))
        try:
            out = Tensor(_timed(fn, "forward", fn.forward, *arrays), requires_grad=any(needs))
        finally:
            threads.restore()
        if out.requires_grad and self.record:
            self.tape.append((fn, inputs, out))
        return out

    def backward(self, loss, dloss=None):
        loss.grad = np.ones_like(loss.data) if dloss is None else dloss
        leaves = {id(t): t for _, inputs, _ in self.tape for t in inputs
                  if isinstance(t, Tensor) and t.requires_grad and t.is_leaf}
        written = set()  # leaves whose gradient buffer holds this pass's gradient
        threads = Threads()
        try:
            self._backward(leaves, written, threads)
        finally:
            threads.restore()
        self.tape.clear()

    def _backward(self, leaves, written, threads):
        for fn, inputs, out in reversed(self.tape):
            if out.grad is None:
                continue
            fn.grad_targets = [t.grad if isinstance(t, Tensor) and t.is_leaf and id(t) not in written
                               else None for t in inputs]
            threads.set_for(max(np.size(out.grad), max((np.size(t.data) for t in inputs
                                                         if isinstance(t, Tensor)), default=0)))
            grads = _timed(fn, "backward", fn.backward, out.grad)
            fn.grad_targets = ()
            for t, g in zip(inputs, grads):
                if g is None or not isinstance(t, Tensor) or not t.requires_grad:
                    continue
                if t.is_leaf:
                    if id(t) in written:
                        t.grad += g
                    elif g is not t.grad:
                        t.grad[...] = g  # first gradient of this pass overwrites
                    written.add(id(t))
                elif t.grad is None:
                    t.grad = g  # first gradient: hand over the Function's buffer, no copy
                else:
                    t.grad += g
            out.grad = None  # activations' gradients are not kept past their use
        for key, t in leaves.items():
            if key not in written:
                t.grad[...] = 0.0
