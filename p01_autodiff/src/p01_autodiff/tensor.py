"""The engine: a Tensor over a numpy array that records the operations made on it, and reverse-mode autodiff.

Every operation builds a new Tensor that remembers its parents and a `_backward` closure. The closure
receives d(loss)/d(out) and returns d(loss)/d(parent) for each parent: the chain rule, one local derivative
at a time. `backward()` sorts the graph topologically (iteratively: no recursion limit) and walks it from
the output back to the leaves, summing the contributions of every path that reaches a node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block (or a function decorated with it) operations record no graph."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def _as_array(data, dtype=None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    arr = np.asarray(data)
    if arr.dtype.kind != "f":  # ints, bools, lists of python numbers -> float64
        arr = arr.astype(np.float64)
    return arr


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient back to `shape`: the reverse of numpy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of size 1; each copy received a
    gradient, and the input's gradient is the sum of them.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


class Tensor:
    """An ndarray with autodiff. float64 unless you pass float32 data or dtype=np.float32."""

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "op", "name")
    __array_priority__ = 100  # ndarray OP Tensor -> Tensor's reflected operator

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        self.data = _as_array(data, dtype)
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self._parents: tuple[Tensor, ...] = ()
        self._backward = None
        self.op = ""  # the operation that made this tensor ("" for a leaf)
        self.name = name

    @classmethod
    def _make(cls, data: np.ndarray, parents: tuple[Tensor, ...], backward, op: str) -> Tensor:
        out = cls.__new__(cls)
        out.data, out.grad, out.op, out.name = data, None, op, None
        out.requires_grad = _grad_enabled and any(p.requires_grad for p in parents)
        out._parents = parents if out.requires_grad else ()
        out._backward = backward if out.requires_grad else None
        return out

    # --- plain attributes -------------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    dtype = property(lambda self: self.data.dtype)
    T = property(lambda self: self.transpose())

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        extra = f", op={self.op}" if self.op else (", requires_grad=True" if self.requires_grad else "")
        return f"Tensor({np.array2string(self.data, precision=4, threshold=8)}{extra})"

    def item(self) -> float:
        return self.data.item()

    def numpy(self) -> np.ndarray:
        return self.data

    def detach(self) -> Tensor:
        return Tensor(self.data)

    def astype(self, dtype) -> Tensor:
        return Tensor._make(self.data.astype(dtype), (self,),
                            lambda g: (g.astype(self.data.dtype),), "astype")

    def zero_grad(self) -> None:
        self.grad = None

    # --- backward ---------------------------------------------------------------------------------------
    def backward(self, grad=None) -> None:
        """d(self)/d(leaf) into every leaf's .grad (added to what is there, like torch).

        Non-leaf tensors keep the gradient of this pass in .grad too (handy for draw_graph).
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (made under no_grad, "
                               "or from inputs without requires_grad=True)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar output, got shape {self.shape}")
            grad = np.ones_like(self.data)
        grads = {id(self): _as_array(grad, self.data.dtype).reshape(self.shape)}
        for node in reversed(_topological_order(self)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if not node._parents:  # a leaf: accumulate across backward() calls
                node.grad = g if node.grad is None else node.grad + g
                continue
            node.grad = g
            for parent, pg in zip(node._parents, node._backward(g)):
                if pg is None or not parent.requires_grad:
                    continue
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg  # several paths: sum them

    # --- arithmetic -------------------------------------------------------------------------------------
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        return div(self, other)

    def __rtruediv__(self, other):
        return div(other, self)

    def __neg__(self):
        return neg(self)

    def __pow__(self, other):
        return pow(self, other)

    def __rpow__(self, other):
        return pow(other, self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __getitem__(self, index):
        return getitem(self, index)

    # --- methods that forward to the ops below ----------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return max(self, axis, keepdims)

    def exp(self):
        return exp(self)

    def log(self):
        return log(self)

    def tanh(self):
        return tanh(self)

    def sigmoid(self):
        return sigmoid(self)

    def relu(self):
        return relu(self)

    def reshape(self, *shape):
        return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes):
        return transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))


def _topological_order(root: Tensor) -> list[Tensor]:
    """Every node that requires grad, parents before children, by an explicit-stack depth-first search."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if parent.requires_grad and id(parent) not in visited:
                stack.append((parent, False))
    return order


def tensor(x, dtype=None) -> Tensor:
    """A Tensor from anything array-like (a Tensor is returned as is)."""
    return x if isinstance(x, Tensor) else Tensor(x, dtype=dtype)


def _pair(a, b) -> tuple[Tensor, Tensor]:
    """Wrap python numbers / arrays as constants of the other operand's dtype."""
    if not isinstance(a, Tensor):
        a = Tensor(np.asarray(a, dtype=b.data.dtype))
    if not isinstance(b, Tensor):
        b = Tensor(np.asarray(b, dtype=a.data.dtype))
    return a, b


# --- binary ops (full numpy broadcasting; gradients summed back with unbroadcast) ----------------------
def add(a, b) -> Tensor:
    a, b = _pair(a, b)
    return Tensor._make(a.data + b.data, (a, b),
                        lambda g: (unbroadcast(g, a.shape) if a.requires_grad else None,
                                   unbroadcast(g, b.shape) if b.requires_grad else None), "+")


def sub(a, b) -> Tensor:
    a, b = _pair(a, b)
    return Tensor._make(a.data - b.data, (a, b),
                        lambda g: (unbroadcast(g, a.shape) if a.requires_grad else None,
                                   unbroadcast(-g, b.shape) if b.requires_grad else None), "-")


def mul(a, b) -> Tensor:
    a, b = _pair(a, b)
    return Tensor._make(a.data * b.data, (a, b),
                        lambda g: (unbroadcast(g * b.data, a.shape) if a.requires_grad else None,
                                   unbroadcast(g * a.data, b.shape) if b.requires_grad else None), "*")


def div(a, b) -> Tensor:
    a, b = _pair(a, b)
    out = a.data / b.data
    return Tensor._make(out, (a, b),
                        lambda g: (unbroadcast(g / b.data, a.shape) if a.requires_grad else None,
                                   unbroadcast(-g * out / b.data, b.shape) if b.requires_grad else None), "/")


def pow(a, b) -> Tensor:  # noqa: A001 - the op is called pow
    """a ** b. d/da = b a^(b-1); d/db = a^b log(a) (needs a > 0 where b requires grad)."""
    a, b = _pair(a, b)
    out = a.data ** b.data

    def backward(g):
        ga = unbroadcast(g * b.data * a.data ** (b.data - 1), a.shape) if a.requires_grad else None
        gb = unbroadcast(g * out * np.log(a.data), b.shape) if b.requires_grad else None
        return ga, gb

    return Tensor._make(out, (a, b), backward, "**")


def neg(a: Tensor) -> Tensor:
    return Tensor._make(-a.data, (a,), lambda g: (-g,), "neg")


def matmul(a, b) -> Tensor:
    """a @ b with numpy's rules: 1-D operands, and batch dimensions that broadcast."""
    a, b = _pair(a, b)
    out = a.data @ b.data

    def backward(g):
        a2 = a.data if a.ndim > 1 else a.data[None, :]  # 1-D operands act as a row / a column
        b2 = b.data if b.ndim > 1 else b.data[:, None]
        g2 = g.reshape(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1]))
        ga = gb = None
        if a.requires_grad:
            ga = unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if b.requires_grad:
            gb = unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb

    return Tensor._make(out, (a, b), backward, "@")


# --- unary elementwise ---------------------------------------------------------------------------------
def exp(a: Tensor) -> Tensor:
    out = np.exp(a.data)
    return Tensor._make(out, (a,), lambda g: (g * out,), "exp")


def log(a: Tensor) -> Tensor:
    return Tensor._make(np.log(a.data), (a,), lambda g: (g / a.data,), "log")


def tanh(a: Tensor) -> Tensor:
    out = np.tanh(a.data)
    return Tensor._make(out, (a,), lambda g: (g * (1 - out * out),), "tanh")


def sigmoid(a: Tensor) -> Tensor:
    x = a.data
    e = np.exp(-np.abs(x))  # stable on both sides
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return Tensor._make(out, (a,), lambda g: (g * out * (1 - out),), "sigmoid")


def relu(a: Tensor) -> Tensor:
    mask = a.data > 0
    return Tensor._make(np.maximum(a.data, 0), (a,), lambda g: (g * mask,), "relu")


# --- reductions ----------------------------------------------------------------------------------------
def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(ax % ndim for ax in axis))


def _expand(g: np.ndarray, shape, axes, keepdims: bool) -> np.ndarray:
    """Put the reduced axes back (size 1) so the gradient broadcasts over the input's shape."""
    if not keepdims:
        g = np.expand_dims(g, axes) if axes else g
    return np.broadcast_to(g, shape)


def sum(a: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    axes = _axes(axis, a.ndim)
    out = np.sum(a.data, axis=axes, keepdims=keepdims)
    return Tensor._make(np.asarray(out), (a,), lambda g: (_expand(g, a.shape, axes, keepdims),), "sum")


def mean(a: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    axes = _axes(axis, a.ndim)
    n = int(np.prod([a.shape[ax] for ax in axes])) if axes else 1
    out = np.mean(a.data, axis=axes, keepdims=keepdims) if axes else a.data.copy()
    return Tensor._make(np.asarray(out), (a,), lambda g: (_expand(g / n, a.shape, axes, keepdims),), "mean")


def max(a: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Max over axes; ties share the gradient equally (like torch.amax)."""
    axes = _axes(axis, a.ndim)
    kept = np.max(a.data, axis=axes, keepdims=True)

    def backward(g):
        hit = a.data == kept
        return (_expand(g, a.shape, axes, keepdims) * hit / hit.sum(axis=axes, keepdims=True),)

    out = kept if keepdims else np.squeeze(kept, axis=axes)
    return Tensor._make(np.asarray(out), (a,), backward, "max")


# --- shapes and indexing -------------------------------------------------------------------------------
def reshape(a: Tensor, shape) -> Tensor:
    return Tensor._make(a.data.reshape(shape), (a,), lambda g: (g.reshape(a.shape),), "reshape")


def transpose(a: Tensor, axes=None) -> Tensor:
    inverse = None if axes is None else tuple(np.argsort(axes))
    return Tensor._make(np.transpose(a.data, axes), (a,), lambda g: (np.transpose(g, inverse),), "transpose")


def _is_basic(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, np.integer, slice)) for p in parts)


def getitem(a: Tensor, index) -> Tensor:
    """a[index] for ints, slices, None, Ellipsis and fancy (integer / boolean array) indices."""
    if isinstance(index, Tensor):
        index = index.data.astype(np.intp)
    elif isinstance(index, tuple):
        index = tuple(p.data.astype(np.intp) if isinstance(p, Tensor) else p for p in index)

    def backward(g):
        full = np.zeros_like(a.data)
        if _is_basic(index):
            full[index] = g
        else:
            np.add.at(full, index, g)  # a repeated index receives the sum of its gradients
        return (full,)

    return Tensor._make(np.asarray(a.data[index]), (a,), backward, "getitem")


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    tensors = [tensor(t) for t in tensors]
    sizes = np.cumsum([t.shape[axis] for t in tensors])[:-1]
    return Tensor._make(np.concatenate([t.data for t in tensors], axis=axis), tuple(tensors),
                        lambda g: tuple(np.split(g, sizes, axis=axis)), "concat")


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    tensors = [tensor(t) for t in tensors]
    out = np.stack([t.data for t in tensors], axis=axis)
    ax = axis % out.ndim
    return Tensor._make(out, tuple(tensors),
                        lambda g: tuple(np.take(g, i, axis=ax) for i in range(len(tensors))), "stack")
