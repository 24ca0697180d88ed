"""Every op: gradient == central finite differences (gradcheck) AND == torch.autograd, in float64.

Binary ops run on hypothesis-generated shapes that broadcast against each other, so the reduction of the
gradient back to each input's shape is checked too.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import p01_autodiff as ad
from p01_autodiff import functional as F


def compare(ours, theirs, *arrays, check_fd: bool = True):
    """ours(*Tensors) vs theirs(*torch tensors): values and gradients of sum(out * w) to 1e-6, plus gradcheck."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    xs = [ad.Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = ours(*xs)
    w = np.random.default_rng(1).standard_normal(out.shape)
    (out * w).sum().backward()
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    tout = theirs(*ts)
    (tout * torch.tensor(w, dtype=torch.float64)).sum().backward()
    assert out.shape == tuple(tout.shape)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-6, atol=1e-6)
    for i, (x, t) in enumerate(zip(xs, ts)):
        tgrad = t.grad.numpy() if t.grad is not None else np.zeros_like(x.data)
        assert x.grad is not None and x.grad.shape == x.shape, f"input {i}: grad shape"
        np.testing.assert_allclose(x.grad, tgrad, rtol=1e-6, atol=1e-6, err_msg=f"input {i} vs torch")
    if check_fd:
        res = ad.gradcheck(ours, *arrays)
        assert res.ok, str(res)


def rand(shape, seed=0, positive=False, away_from_zero=False):
    r = np.random.default_rng(seed)
    if positive:
        return r.uniform(0.5, 2.0, shape)
    x = r.standard_normal(shape)
    if away_from_zero:  # keep off the kinks of relu / max
        x = np.sign(x) * (np.abs(x) + 0.1)
    return x


BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, False),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, False),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, False),
    "div": (lambda a, b: a / b, lambda a, b: a / b, True),
    "pow": (lambda a, b: a ** b, lambda a, b: a ** b, False),
}


@pytest.mark.parametrize("name", list(BINARY))
@settings(max_examples=40, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       seed=st.integers(0, 1000))
def test_binary_ops_broadcast(name, shapes, seed):
    ours, theirs, positive = BINARY[name]
    sa, sb = shapes.input_shapes
    compare(ours, theirs, rand(sa, seed, positive=True), rand(sb, seed + 1, positive=positive))


@pytest.mark.parametrize("case", [
    ("x+2", lambda x: x + 2.0, lambda x: x + 2.0),
    ("2-x", lambda x: 2.0 - x, lambda x: 2.0 - x),
    ("3*x", lambda x: 3.0 * x, lambda x: 3.0 * x),
    ("1/x", lambda x: 1.0 / x, lambda x: 1.0 / x),
    ("x**3", lambda x: x ** 3, lambda x: x ** 3),
    ("x**-0.5", lambda x: x ** -0.5, lambda x: x ** -0.5),
    ("2**x", lambda x: 2.0 ** x, lambda x: 2.0 ** x),
    ("neg", lambda x: -x, lambda x: -x),
    ("exp", ad.exp, torch.exp),
    ("log", ad.log, torch.log),
    ("tanh", ad.tanh, torch.tanh),
    ("sigmoid", ad.sigmoid, torch.sigmoid),
    ("relu", ad.relu, torch.relu),
], ids=lambda c: c[0])
def test_unary_ops(case):
    name, ours, theirs = case
    compare(ours, theirs, rand((3, 4), 2, positive=True))
    if name not in ("log", "x**-0.5"):
        compare(ours, theirs, rand((2, 3, 2), 3, away_from_zero=True))


def test_sigmoid_is_stable_for_large_inputs():
    x = ad.Tensor([-800.0, 0.0, 800.0], requires_grad=True)
    y = x.sigmoid()
    y.sum().backward()
    np.testing.assert_allclose(y.data, [0.0, 0.5, 1.0])
    assert np.all(np.isfinite(x.grad))


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                                   ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 2))])
def test_matmul(sa, sb):
    compare(lambda a, b: a @ b, lambda a, b: a @ b, rand(sa, 4), rand(sb, 5))


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (1,)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(op, axis, keepdims):
    def ours(x):
        return getattr(x, op)(axis=axis, keepdims=keepdims)

    def theirs(x):
        dim = tuple(range(x.ndim)) if axis is None else axis
        if op == "max":
            return torch.amax(x, dim=dim, keepdim=keepdims)
        return getattr(torch, op)(x, dim=dim, keepdim=keepdims)

    compare(ours, theirs, rand((2, 3, 4), 6))


def test_max_ties_share_the_gradient_like_amax():
    compare(lambda x: x.max(axis=1), lambda x: torch.amax(x, dim=1), np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),
            check_fd=False)


@pytest.mark.parametrize("case", [
    ("reshape", lambda x: x.reshape(4, 6), lambda x: x.reshape(4, 6)),
    ("reshape-1", lambda x: x.reshape((-1,)), lambda x: x.reshape(-1)),
    ("transpose", lambda x: x.transpose(), lambda x: x.permute(2, 1, 0)),
    ("transpose-axes", lambda x: x.transpose(1, 2, 0), lambda x: x.permute(1, 2, 0)),
    ("T-2d", lambda x: x[0].T, lambda x: x[0].T),
    ("int", lambda x: x[1], lambda x: x[1]),
    ("slice", lambda x: x[:, 1:3, ::2], lambda x: x[:, 1:3, ::2]),
    ("negative-int", lambda x: x[-1, :, 2], lambda x: x[-1, :, 2]),
    ("fancy-repeats", lambda x: x[[0, 1, 0, 0]], lambda x: x[[0, 1, 0, 0]]),
    ("fancy-pairs", lambda x: x[np.array([0, 1, 1]), np.array([2, 0, 2])],
     lambda x: x[torch.tensor([0, 1, 1]), torch.tensor([2, 0, 2])]),
    ("mixed", lambda x: x[1, [0, 0, 2], 1:], lambda x: x[1, [0, 0, 2], 1:]),
    ("bool-mask", lambda x: x[x.data > 0], lambda x: x[x > 0]),
    ("none", lambda x: x[None, 0], lambda x: x[None, 0]),
], ids=lambda c: c[0])
def test_shape_and_index_ops(case):
    _, ours, theirs = case
    compare(ours, theirs, rand((2, 3, 4), 7))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_stack(axis):
    a, b, c = rand((2, 3), 8), rand((2, 3), 9), rand((2, 3), 10)
    compare(lambda *t: ad.stack(t, axis=axis), lambda *t: torch.stack(t, dim=axis), a, b, c)
    b2 = rand((2, 5), 11) if axis != 0 else rand((4, 3), 11)
    compare(lambda *t: ad.concat(t, axis=axis), lambda *t: torch.cat(t, dim=axis), a, b2)


@pytest.mark.parametrize("axis", [-1, 0])
def test_log_softmax_and_softmax(axis):
    x = rand((4, 5), 12) * 3
    compare(lambda t: F.log_softmax(t, axis), lambda t: torch.log_softmax(t, dim=axis), x)
    compare(lambda t: F.softmax(t, axis), lambda t: torch.softmax(t, dim=axis), x)


def test_log_softmax_is_stable_for_huge_logits():
    out = F.log_softmax(ad.Tensor([[1000.0, 0.0, -1000.0]]))
    assert np.all(np.isfinite(out.data))
    np.testing.assert_allclose(out.data[0, 0], 0.0, atol=1e-12)


def test_cross_entropy_and_mse():
    y = np.array([0, 3, 1, 1, 4])
    compare(lambda t: F.cross_entropy(t, y), lambda t: torch.nn.functional.cross_entropy(t, torch.tensor(y)),
            rand((5, 6), 13) * 2)
    compare(lambda p, t: F.mse(p, t), lambda p, t: torch.nn.functional.mse_loss(p, t), rand((4, 3), 14),
            rand((4, 3), 15))
    compare(lambda p, t: F.mse(p, t), lambda p, t: ((p - t) ** 2).mean(), rand((4, 3), 16), rand((3,), 17))


def test_composite_expression_through_many_ops():
    def ours(a, b):
        h = (a @ b).tanh() + a.sum(axis=1, keepdims=True).sigmoid()
        return F.log_softmax(ad.concat([h, h.exp()], axis=1), axis=1)[:, 1:].mean(axis=0)

    def theirs(a, b):
        h = (a @ b).tanh() + a.sum(dim=1, keepdim=True).sigmoid()
        return torch.log_softmax(torch.cat([h, h.exp()], dim=1), dim=1)[:, 1:].mean(dim=0)

    compare(ours, theirs, rand((3, 4), 18), rand((4, 2), 19))
