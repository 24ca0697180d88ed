"""The engine itself: hand-derived gradients, accumulation, deep graphs, no_grad, dtypes, gradcheck, draw_graph."""

import sys

import numpy as np
import pytest

import p01_autodiff as ad
from p01_autodiff.tensor import Tensor, _topological_order


def test_seed_example_hand_gradients():
    # L = (a*b + c)^2 ; with u = a*b + c: dL/da = 2u*b, dL/db = 2u*a, dL/dc = 2u
    a, b, c = (Tensor(v, requires_grad=True) for v in (2.0, -3.0, 10.0))
    L = (a * b + c) ** 2
    L.backward()
    u = 2.0 * -3.0 + 10.0
    assert L.item() == u ** 2
    assert (a.grad, b.grad, c.grad) == (2 * u * -3.0, 2 * u * 2.0, 2 * u)


def test_shared_node_accumulates_over_paths():
    a, b = Tensor(3.0, requires_grad=True), Tensor(4.0, requires_grad=True)
    y = a * b + a  # dy/da = b + 1
    y.backward()
    assert a.grad == 5.0 and b.grad == 3.0
    z = a * a * a  # a used three times in one graph: 3a^2
    a.grad = None
    z.backward()
    assert a.grad == 27.0


def test_leaf_grads_add_up_across_backward_calls_until_zeroed():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])
    x.zero_grad()
    (3 * x).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_100k_op_chain_backpropagates_without_recursion_error():
    x = Tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0  # 2 ops per step: 200k nodes
    assert sys.getrecursionlimit() < 200_000
    y.backward()
    assert x.grad == pytest.approx(1.0)
    assert len(_topological_order(y)) == 200_001


def test_topological_order_puts_parents_first():
    a = Tensor(1.0, requires_grad=True)
    b = a * 2
    c = b + a
    d = c * b
    order = _topological_order(d)
    pos = {id(n): i for i, n in enumerate(order)}
    for n in order:
        for p in n._parents:
            if p.requires_grad:
                assert pos[id(p)] < pos[id(n)]


def test_no_grad_records_nothing_and_restores():
    w = Tensor([1.0, 2.0], requires_grad=True)
    with ad.no_grad():
        y = (w * 3).sum()
        assert not ad.is_grad_enabled()
    assert ad.is_grad_enabled()
    assert not y.requires_grad and y._parents == ()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()

    @ad.no_grad()
    def f(t):
        return t * 2

    assert not f(w).requires_grad
    assert (w * 2).requires_grad


def test_backward_of_non_scalar_needs_a_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()
    (x * 2).backward(np.array([1.0, 10.0]))
    np.testing.assert_allclose(x.grad, [2.0, 20.0])


def test_constants_get_no_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor([5.0, 6.0])
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad, [5.0, 6.0])


def test_float64_default_and_float32_kept():
    assert Tensor([1, 2]).dtype == np.float64
    assert Tensor(3).dtype == np.float64
    x = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    w = Tensor(np.ones((3, 4)), dtype=np.float32, requires_grad=True)
    out = ((x @ w).relu() * 0.5 + 1).exp().mean()
    assert out.dtype == np.float32
    out.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_ndarray_on_the_left_gives_a_tensor():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 4.0])


def test_gradcheck_catches_a_wrong_gradient():
    def wrong_square(x):  # value x^2, but claims d/dx = x (the correct one is 2x)
        return Tensor._make(x.data ** 2, (x,), lambda g: (g * x.data,), "wrong_square")

    res = ad.gradcheck(wrong_square, np.array([1.0, 2.0, 3.0]))
    assert not res.ok and not res
    assert res.worst["input"] == 0 and res.worst["index"] == (2,)
    assert "FAILED" in str(res)
    good = ad.gradcheck(lambda x: x ** 2, np.array([1.0, 2.0, 3.0]))
    assert good.ok and good.max_abs_err < 1e-6


def test_draw_graph_writes_a_png(tmp_path):
    a, b, c = (Tensor(v, requires_grad=True, name=n) for v, n in ((2.0, "a"), (-3.0, "b"), (10.0, "c")))
    L = (a * b + c) ** 2
    L.name = "L"
    L.backward()
    path = ad.draw_graph(L, tmp_path / "graph.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
