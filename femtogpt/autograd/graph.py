"""The tape: a Graph records Function calls on Tensors and runs their backward in reverse order.

Design for speed (no allocation per step): a Function instance owns its output and gradient buffers
and reuses them while the shapes stay the same, so the model creates its Functions once and calls
each of them once per pass. Backward returns one gradient array per input (or None); the Graph hands
the first gradient of a tensor over by reference and adds later ones in place, so a tensor with a
single consumer costs no copy. Parameters are leaf Tensors whose `.grad` is preset to a view of the
flat gradient buffer: their gradients are always added in place (the caller zeroes that buffer).
Non-Tensor inputs (token ids, targets) are passed to forward as they are and get no gradient.
"""
import numpy as np


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "name")

    def __init__(self, data, requires_grad=False, name=None, grad=None):
        self.data = data
        self.requires_grad = requires_grad
        self.name = name
        self.grad = grad

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Tensor({self.name or ''} shape={self.data.shape} dtype={self.data.dtype})"


class Function:
    """One op. Subclasses implement forward(*inputs) -> array and backward(dout) -> tuple of grads.

    `needs_grad[i]` tells backward which inputs want a gradient (skip the work for the others).
    backward must not modify `dout`; it returns arrays it owns (see `buffer`).
    """

    needs_grad = ()

    def buffer(self, key, shape, dtype, zero=False):
        # a persistent scratch/output array per key, reallocated only when shape or dtype change
        bufs = self.__dict__.setdefault("_buffers", {})
        buf = bufs.get(key)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
            bufs[key] = buf
        elif zero:
            buf.fill(0)
        return buf

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
        out = Tensor(fn.forward(*arrays), requires_grad=any(needs))
        if out.requires_grad and self.record:
            self.tape.append((fn, inputs, out))
        return out

    def backward(self, loss, dloss=None):
        loss.grad = np.ones_like(loss.data) if dloss is None else dloss
        for fn, inputs, out in reversed(self.tape):
            if out.grad is None:
                continue
            grads = fn.backward(out.grad)
            for t, g in zip(inputs, grads):
                if g is None or not isinstance(t, Tensor) or not t.requires_grad:
                    continue
                if t.grad is None:
                    t.grad = g  # first gradient: hand over the Function's buffer, no copy
                else:
                    t.grad += g
            out.grad = None  # activations' gradients are not kept past their use
        self.tape.clear()
