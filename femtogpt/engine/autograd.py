"""The tape: a Graph records Function calls on Tensors and runs their backward in reverse order.

Functions are built for speed and memory: no allocation per step. A Function instance owns its forward
buffers and reuses them while the shapes stay the same, so a model creates its Functions once (one per
site and layer) and calls them on every pass. That reuse is safe under the rules below.

The engine's contracts (the one place they are written; ContractError when one is broken)
1. One call per pass. Forward keeps on the instance, as array attributes, what its backward reads
   (inputs, statistics, probabilities); a second call would overwrite them. So an instance is recorded
   at most once on a tape between two backward passes. Asserted always: recording it again raises.
2. Settings are call arguments: per-call values (dropout p and key, the cross-entropy denominator)
   go into the call, `graph(fn, x, p=0.1, key=k)`, and forward keeps them for backward (it sets
   them from its arguments, so an attribute set on an op before a call has no effect).
3. Shared forward buffers. `fn.forward_store`, a dict several Functions may share, holds outputs that
   no backward reads and that are consumed before the next writer runs (the model: the outputs of the
   attention projection and of the second FFN product, read once by the residual LayerNorm's forward,
   which keeps its own sum). Anything a backward reads lives in the Function's own buffers (checked
   with contract 4).
4. Shared gradient buffers. Backward buffers (input gradients, scratch) come from `fn.grad_store`, a
   dict that Functions may share (the model: one per layer parity, since a layer's gradients are dead
   once the backward is two layers further down). A gradient must be consumed before another backward
   writes into its buffer, and backward must not modify its `dout`.
   Checked when CHECKS is on (the test suite turns it on, tests/conftest.py; it costs a checksum of
   every saved array and gradient): the arrays a Function keeps are checksummed after its forward and
   compared before its backward, and each activation's gradient is checksummed when it is handed over
   (or added to) and compared when its consumer reads it and after. So a shared buffer overwritten
   before it is read fails loudly, naming the op and the array.
5. Gradients. Backward returns one gradient array per input (or None). The Graph hands the first
   gradient of an activation over by reference and adds later ones in place. Parameters are leaf
   Tensors whose `.grad` is a view of the flat gradient buffer; for those the Graph offers the view in
   `fn.grad_targets[i]`, and a Function may write the gradient straight into it (and return it),
   saving a parameter-sized buffer and a pass. A leaf's first gradient in a pass overwrites, later
   ones add, and leaves that got none are zeroed at the end, so the caller never zeroes the buffer.
   `fn.needs_grad[i]` tells backward which inputs want a gradient. Non-Tensor inputs (token ids,
   targets) are passed to forward as they are and get no gradient.

Every buffer a training step allocates is listed in femtogpt/model/buffers.py (a test holds the list
to what the Functions allocate). Small ops run their kernels on one thread (femtogpt/engine/threads.py);
this changes speed only.
"""
import threading
import time
import zlib

import numpy as np

from femtogpt.engine.threads import Threads

_profile = None  # an OpProfile while profiling (femtogpt bench --profile), else None
CHECKS = False  # checksum saved arrays and gradients between forward and backward (contract 4)


class ContractError(RuntimeError):
    """An engine contract (see the module docstring) was broken: a bug in a model or an op."""


class OpProfile:
    """Seconds spent in each op's forward and backward, by op class, summed over every call and over
    the threads of the batch's units (each call's wall time on its own thread; the units overlap, so
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


def _timed(fn, direction, call, *args, **settings):
    if _profile is None:
        return call(*args, **settings)
    t0 = time.perf_counter()
    try:
        return call(*args, **settings)
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
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = store[key] = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    elif zero:
        buf.fill(0)
    return buf


class Function:
    """One op: forward(*inputs, **settings) -> array and backward(dout) -> one gradient per input.
    Instances follow the contracts of the module docstring (one call per pass, settings as call
    arguments, shared buffers only for what no backward reads or what is consumed in time)."""

    needs_grad = ()
    grad_targets = ()
    grad_store = None  # a dict shared with other Functions, or None for a private one
    forward_store = None  # likewise for forward outputs that no backward reads
    _buffers = None  # the instance's own forward arrays, a dict made on first use

    def buffer(self, key, shape, dtype, zero=False):
        """A persistent forward array per key (shape: a tuple), reallocated only when shape or dtype
        change."""
        store = self.forward_store
        if store is None:
            store = self._buffers
            if store is None:
                store = self._buffers = {}
        buf = store.get(key)  # _get_buffer inlined: the generator calls this ~40 times a token
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = store[key] = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
        elif zero:
            buf.fill(0)
        return buf

    def grad_buffer(self, key, shape, dtype, zero=False):
        """A backward array per key (shape: a tuple), from the (possibly shared) gradient store."""
        if self.grad_store is None:
            self.grad_store = {}
        return _get_buffer(self.grad_store, key, shape, dtype, zero)

    def grad_target(self, i, key, shape, dtype):
        """Where to write input i's gradient: the parameter's own buffer if offered, else ours."""
        target = self.grad_targets[i] if i < len(self.grad_targets) else None
        return target if target is not None else self.grad_buffer(key, shape, dtype)

    def forward(self, *inputs, **settings):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError


def _checksum(a):
    return zlib.crc32(a if a.flags.c_contiguous else np.ascontiguousarray(a))


def _saved_state(fn):
    """{attribute: checksum} of the arrays fn keeps for its backward (contract 4)."""
    return {name: _checksum(a) for name, a in vars(fn).items() if isinstance(a, np.ndarray)}


def _check(same, what):
    if not same:
        raise ContractError(f"{what} (see the contracts in femtogpt/engine/autograd.py)")


class Graph:
    """Records calls while any input needs a gradient; `backward(loss)` replays them in reverse."""

    def __init__(self, record=True):
        self.tape = []
        self.record = record  # False: forward only (evaluation, sampling)
        self._recorded = set()  # the Functions on the tape (contract 1)

    def __call__(self, fn, *inputs, **settings):
        """fn.forward(*input arrays, **settings) as a Tensor; recorded for backward when an input
        needs a gradient. settings: per-call values (dropout p and key, a denominator; contract 2)."""
        arrays = [t.data if isinstance(t, Tensor) else t for t in inputs]
        needs = tuple(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        recording = self.record and any(needs)
        if recording and fn in self._recorded:
            raise ContractError(f"{type(fn).__name__} called twice in one pass: its second forward would "
                                "overwrite what the first saved for backward; give each call its own "
                                "instance (see the contracts in femtogpt/engine/autograd.py)")
        fn.needs_grad = needs
        threads = Threads()
        threads.set_for(max((a.size for a in arrays if isinstance(a, np.ndarray)), default=0))
        try:
            out = Tensor(_timed(fn, "forward", fn.forward, *arrays, **settings), requires_grad=any(needs))
        finally:
            threads.restore()
        if recording:
            self._recorded.add(fn)
            self.tape.append((fn, inputs, out, _saved_state(fn) if CHECKS else None))
        return out

    def backward(self, loss, dloss=None):
        loss.grad = np.ones_like(loss.data) if dloss is None else dloss
        leaves = {id(t): t for _, inputs, _, _ in self.tape for t in inputs
                  if isinstance(t, Tensor) and t.requires_grad and t.is_leaf}
        written = set()  # leaves whose gradient buffer holds this pass's gradient
        sums = {id(loss): _checksum(loss.grad)} if CHECKS else None  # activation id: its gradient's checksum
        threads = Threads()
        try:
            self._backward(leaves, written, threads, sums)
        finally:
            threads.restore()
            self.tape.clear()
            self._recorded.clear()

    def _backward(self, leaves, written, threads, sums):
        for fn, inputs, out, saved in reversed(self.tape):
            if out.grad is None:
                continue
            name = type(fn).__name__
            if sums is not None:
                for attr, value in _saved_state(fn).items():
                    _check(saved.get(attr) == value, f"{name}.backward: its saved array '{attr}' changed after "
                           "its forward (a buffer it keeps was overwritten)")
                _check(_checksum(out.grad) == sums[id(out)], f"{name}.backward: the gradient of its output "
                       "changed after it was computed (a shared gradient buffer was overwritten)")
            fn.grad_targets = [t.grad if isinstance(t, Tensor) and t.is_leaf and id(t) not in written
                               else None for t in inputs]
            threads.set_for(max(np.size(out.grad), max((np.size(t.data) for t in inputs
                                                         if isinstance(t, Tensor)), default=0)))
            grads = _timed(fn, "backward", fn.backward, out.grad)
            fn.grad_targets = ()
            if sums is not None:
                _check(_checksum(out.grad) == sums.pop(id(out)), f"{name}.backward modified its dout")
            for t, g in zip(inputs, grads):
                if g is None or not isinstance(t, Tensor) or not t.requires_grad:
                    continue
                if t.is_leaf:
                    if id(t) in written:
                        t.grad += g
                    elif g is not t.grad:
                        t.grad[...] = g  # first gradient of this pass overwrites
                    written.add(id(t))
                    continue
                if t.grad is None:
                    t.grad = g  # first gradient: hand over the Function's buffer, no copy
                else:
                    if sums is not None:
                        _check(_checksum(t.grad) == sums[id(t)], f"{name}.backward: the gradient it adds "
                               "to changed after it was computed (a shared gradient buffer was overwritten)")
                    t.grad += g
                if sums is not None:
                    sums[id(t)] = _checksum(t.grad)
            out.grad = None  # activations' gradients are not kept past their use
        for key, t in leaves.items():
            if key not in written:
                t.grad[...] = 0.0
