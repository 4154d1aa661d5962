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


def check_model_grads(model, ids, targets, dropout=0.0, key=5):
    """The whole model's float64 gradcheck by reference tensor name: every parameter's analytic
    gradient of the mean cross-entropy on (ids, targets) against central differences. Prints a row a
    tensor, asserts every tensor matches and that every reference name was checked; returns the
    analytic gradients by name."""
    from femtogpt.engine.params import reference_names

    def loss():
        return float(model.loss(Graph(record=False), ids, targets, dropout, key=key).data)

    model.params.grad.fill(0)
    g = Graph()
    g.backward(model.loss(g, ids, targets, dropout, key=key))
    grads, rows, bad = model.params.named_grads(), [], []
    for name, view in model.params.named().items():
        num = numeric_grad(loss, view)
        err = float(np.max(np.abs(grads[name] - num)))
        ok = np.allclose(grads[name], num, rtol=1e-5, atol=1e-7)
        rows.append(f"{name:28s} {err:.2e} {'ok' if ok else 'FAIL'}")
        if not ok:
            bad.append(name)
    print("\n".join(rows))
    assert not bad, f"gradient mismatch in {bad}"
    assert len(rows) == len(reference_names(model.hp))
    return grads
