"""Central-difference gradient checks in float64.

An op is scalarised with a fixed random `dout` as loss = sum(out * dout); every float input's
analytic gradient (from the op's backward through a Graph) is compared with
(loss(x + h) - loss(x - h)) / 2h, element by element.
"""
import numpy as np

from femtogpt.engine.autograd import Graph, Tensor


def numeric_grad(f, x, h=1e-6):
    """d f() / d x by central differences; f reads x, which is perturbed in place."""
    g = np.zeros(x.shape)
    for i in np.ndindex(x.shape):  # index in place: x may be a strided view (reshape would copy)
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


def check_op(make_fn, inputs, diff, seed=0, atol=1e-6, rtol=1e-5, **settings):
    """make_fn() -> a fresh Function; inputs: list of arrays (float64) or other args;
    diff: indices of inputs to check; settings: the call's settings (e.g. p, key).
    Returns {index: max abs error}."""
    rng = np.random.default_rng(seed)
    fn = make_fn()
    out = fn.forward(*inputs, **settings)
    dout = rng.standard_normal(np.shape(out))

    def loss():
        return float((make_fn().forward(*inputs, **settings) * dout).sum())

    g = Graph()
    tensors = [Tensor(x, requires_grad=i in diff) if i in diff else x for i, x in enumerate(inputs)]
    result = g(make_fn(), *tensors, **settings)
    g.backward(result, np.asarray(dout, dtype=result.data.dtype))
    errors = {}
    for i in diff:
        num = numeric_grad(loss, inputs[i])
        ana = tensors[i].grad
        assert ana is not None, f"input {i} got no gradient"
        err = np.abs(ana - num)
        assert np.all(err <= atol + rtol * np.abs(num)), f"input {i}: max err {err.max():.3e}"
        errors[i] = float(err.max())
    return errors
