"""The engine's contracts (femtogpt/engine/autograd.py) are asserted: each check fires when its rule is
broken, on toy ops and on the model, and the model's own buffer sharing passes them."""
import numpy as np
import pytest

from femtogpt.engine import autograd
from femtogpt.engine.autograd import ContractError, Function, Graph, Tensor
from femtogpt.engine.ops.matmul import MatMul
from tests.models import make_test_model


class Scale(Function):
    """out = factor * x, its gradient in the (possibly shared) grad store under "dx"."""

    def __init__(self, factor=2.0):
        self.factor = factor

    def forward(self, x):
        out = self.buffer("out", x.shape, x.dtype)
        np.multiply(x, self.factor, out=out)
        return out

    def backward(self, dout):
        dx = self.grad_buffer("dx", dout.shape, dout.dtype)
        np.multiply(dout, self.factor, out=dx)
        return (dx,)


class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, dout):
        return dout.copy(), dout.copy()


class Total(Function):
    def forward(self, x):
        self.shape = x.shape
        return np.array(x.sum())

    def backward(self, dout):
        return (np.full(self.shape, float(dout)),)


class DoublesItsDout(Scale):
    def backward(self, dout):
        dout *= 2.0  # breaks the rule: dout may be another op's pending gradient
        return (dout,)


@pytest.fixture
def checks():
    assert autograd.CHECKS, "tests/conftest.py turns the checks on for the suite"
    return True


def leaf(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return Tensor(x, requires_grad=True, grad=np.zeros(shape))


def test_calling_one_function_twice_in_a_pass_raises():
    g, mm = Graph(), MatMul()
    x, w = leaf((3, 4)), leaf((4, 2), 1)
    g(mm, x, w)
    with pytest.raises(ContractError, match="MatMul called twice in one pass"):
        g(mm, x, w)


def test_a_function_may_run_again_after_backward_or_without_recording():
    mm, x, w = MatMul(), leaf((3, 4)), leaf((4, 2), 1)
    for _ in range(2):
        g = Graph()
        g.backward(g(Total(), g(mm, x, w)))
    forward_only = Graph(record=False)
    forward_only(mm, x, w)
    forward_only(mm, x, w)  # nothing is saved for a backward, so nothing can be overwritten


def test_the_model_sharing_one_function_between_layers_raises():
    model = make_test_model(num_layers=2)
    ids = np.zeros((1, 4), np.int64)
    model.loss(Graph(), ids, ids)
    prog = model._programs[(1, 4, 0)]
    prog.ops["gelu"][1] = prog.ops["gelu"][0]  # a wiring bug: one op object serving two layers
    with pytest.raises(ContractError, match="BiasGelu called twice in one pass"):
        model.loss(Graph(), ids, ids)
    assert np.isfinite(model.logits(ids)).all()  # forward only: allowed


def test_a_gradient_overwritten_before_it_is_read_raises(checks):
    # y = A(x), w = B(z), u = C(y): the backward runs C (writes y's gradient into C's "dx"), then B,
    # then A reads y's gradient. B and C wrongly share a grad store, so B overwrites it first.
    def run(share):
        A, B, C = Scale(), Scale(3.0), Scale()
        if share:
            B.grad_store = C.grad_store = {}
        x, z = leaf((2, 3)), leaf((2, 3), 1)
        g = Graph()
        y = g(A, x)
        w = g(B, z)
        g.backward(g(Total(), g(Add(), g(C, y), w)))
        return x.grad.copy()

    np.testing.assert_array_equal(run(share=False), np.full((2, 3), 4.0))
    with pytest.raises(ContractError, match="Scale.backward: the gradient of its output changed"):
        run(share=True)


def test_a_backward_that_modifies_its_dout_raises(checks):
    g, x = Graph(), leaf((2, 2))
    y = g(Scale(), x)
    loss = g(Total(), g(DoublesItsDout(), y))
    with pytest.raises(ContractError, match="DoublesItsDout.backward modified its dout"):
        g.backward(loss)


def two_layer_batch(seed):
    """A 2-layer test model and one (2, 4) batch of ids and targets."""
    rng = np.random.default_rng(seed)
    return make_test_model(num_layers=2), rng.integers(0, 11, (2, 4)), rng.integers(0, 11, (2, 4))


def test_a_saved_array_overwritten_between_forward_and_backward_raises(checks):
    # the attention output is read by the projection's backward (MatMul keeps its input x): sharing
    # it between layers, as proj and ff2 outputs are shared, would hand layer 0 layer 1's values
    model, ids, targets = two_layer_batch(0)
    model.loss(Graph(record=False), ids, targets)
    shared = {}
    for fn in model._programs[(2, 4, 0)].ops["attn"]:
        fn.forward_store = shared
    g = Graph()
    loss = model.loss(g, ids, targets)
    with pytest.raises(ContractError, match="MatMul.backward: its saved array 'x' changed"):
        g.backward(loss)


def test_corrupting_a_shared_gradient_buffer_between_forward_and_backward_raises(checks):
    # the residual LayerNorm of layer 1 hands layer 0's output its gradient in its grad store's "da";
    # scribbling on that buffer (as a misplaced op sharing the store would) fails at the consumer
    model, ids, targets = two_layer_batch(1)
    g = Graph()
    loss = model.loss(g, ids, targets)
    prog = model._programs[(2, 4, 0)]
    qkv = prog.ops["qkv"][1]
    real_backward = qkv.backward

    def scribbling_backward(dout):
        grads = real_backward(dout)
        prog.ops["res_attn"][1].grad_store["da"][0, 0] += 1.0  # n_1's gradient, not yet consumed
        return grads

    qkv.backward = scribbling_backward
    with pytest.raises(ContractError, match="MatMul.backward: the gradient it adds to changed"):
        g.backward(loss)


def test_the_model_passes_the_checks_with_dropout_and_shards(checks):
    model = make_test_model(num_layers=3, dtype=np.float32)
    rng = np.random.default_rng(2)
    ids, targets = rng.integers(0, 11, (5, 4)), rng.integers(0, 11, (5, 4))
    for _ in range(2):  # the second step reuses every buffer
        assert np.isfinite(model.loss_and_grad(ids, targets, dropout=0.2, key=4))


def test_settings_are_call_arguments():
    from femtogpt.engine.ops.attention import CausalSelfAttention
    from femtogpt.engine.ops.cross_entropy import CrossEntropy
    from femtogpt.engine.ops.layernorm import ResidualLayerNorm

    with pytest.raises(TypeError):
        CausalSelfAttention(4, 2, 0.1)  # dropout is no constructor argument
    with pytest.raises(TypeError):
        ResidualLayerNorm(0.1, 3)
    logits, bias, targets = np.zeros((4, 3)), np.zeros(3), np.array([0, 1, 2, 0])
    assert CrossEntropy().forward(logits, bias, targets, denominator=8) == pytest.approx(np.log(3) / 2)
    assert not hasattr(CrossEntropy, "denominator")
