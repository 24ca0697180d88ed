"""p01_autodiff: a numpy tensor autodiff engine (Tensor, backward, gradcheck) with a small nn and optim."""

from .functional import cross_entropy, log_softmax, mse, softmax
from .gradcheck import GradcheckResult, gradcheck
from .graph import draw_graph
from .tensor import (
    Tensor,
    add,
    concat,
    div,
    exp,
    getitem,
    is_grad_enabled,
    log,
    matmul,
    max,
    mean,
    mul,
    neg,
    no_grad,
    pow,
    relu,
    reshape,
    sigmoid,
    stack,
    sub,
    sum,
    tanh,
    tensor,
    transpose,
    unbroadcast,
)

__all__ = [
    "Tensor", "tensor", "no_grad", "is_grad_enabled", "unbroadcast", "add", "sub", "mul", "div", "neg", "pow",
    "matmul", "exp", "log", "tanh", "sigmoid", "relu", "sum", "mean", "max", "reshape", "transpose", "getitem",
    "concat", "stack", "log_softmax", "softmax", "cross_entropy", "mse", "gradcheck", "GradcheckResult", "draw_graph",
]
