"""2D loss surfaces with analytic gradients, known minima, a start point and plot bounds.

Every function works on scalars and on numpy grids (for contour plots). Gradients are written out by hand
and checked against finite differences in tests/test_surfaces.py; every listed minimum has zero gradient.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Surface:
    name: str
    formula: str
    f: Callable  # f(x, y) -> value
    grad: Callable  # grad(x, y) -> (df/dx, df/dy)
    minima: tuple[tuple[float, float], ...]  # global minima (all of them, where there are several)
    f_min: float
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    lr: dict  # a learning rate per optimizer that works from `start` (read off --sweep runs; see README)
    note: str = ""

    def loss(self, p: np.ndarray) -> float:
        return float(self.f(p[0], p[1]))

    def gradient(self, p: np.ndarray) -> np.ndarray:
        gx, gy = self.grad(p[0], p[1])
        return np.array([gx, gy], dtype=np.float64)

    def distance_to_minimum(self, p: np.ndarray) -> float:
        return float(min(math.hypot(p[0] - mx, p[1] - my) for mx, my in self.minima))


# --- the functions ---------------------------------------------------------------------------

def _rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _rosenbrock_grad(x, y):
    return -2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)


def _himmelblau(x, y):
    return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2


def _himmelblau_grad(x, y):
    a, b = x * x + y - 11, x + y * y - 7
    return 4 * x * a + 2 * b, 2 * a + 4 * y * b


def _beale(x, y):
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _beale_grad(x, y):
    t1, t2, t3 = 1.5 - x + x * y, 2.25 - x + x * y**2, 2.625 - x + x * y**3
    gx = 2 * t1 * (y - 1) + 2 * t2 * (y**2 - 1) + 2 * t3 * (y**3 - 1)
    gy = 2 * t1 * x + 4 * t2 * x * y + 6 * t3 * x * y**2
    return gx, gy


def _saddle(x, y):
    return x * x - y * y + y**4 / 4


def _saddle_grad(x, y):
    return 2 * x, -2 * y + y**3


def _rastrigin(x, y):
    return 20 + x * x - 10 * np.cos(2 * np.pi * x) + y * y - 10 * np.cos(2 * np.pi * y)


def _rastrigin_grad(x, y):
    return 2 * x + 20 * np.pi * np.sin(2 * np.pi * x), 2 * y + 20 * np.pi * np.sin(2 * np.pi * y)


def _plateau(x, y):
    return 1 - np.exp(-(x * x + y * y) / 2)


def _plateau_grad(x, y):
    e = np.exp(-(x * x + y * y) / 2)
    return x * e, y * e


def ravine(condition: float = 100.0, angle: float = 0.0) -> tuple[Callable, Callable]:
    """f = (u^2 + condition * v^2) / 2 in coordinates (u, v) rotated by `angle` degrees: a long narrow valley.

    The Hessian has eigenvalues 1 and `condition`, so the condition number is exactly `condition`.
    """
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))

    def f(x, y):
        u, v = c * x + s * y, -s * x + c * y
        return 0.5 * (u * u + condition * v * v)

    def grad(x, y):
        u, v = c * x + s * y, -s * x + c * y
        return c * u - s * condition * v, s * u + c * condition * v

    return f, grad


# Himmelblau's four minima, to double precision (Newton-refined; all have f = 0).
_HIMMELBLAU_MINIMA = ((3.0, 2.0), (-2.805118086952745, 3.131312518250573),
                      (-3.779310253377747, -3.283185991286170), (3.584428340330492, -1.848126526964404))

SURFACES = ("rosenbrock", "himmelblau", "beale", "saddle", "ravine", "rastrigin", "plateau")


def get_surface(name: str, condition: float = 100.0, angle: float = 0.0) -> Surface:
    """The surface by name; `condition` and `angle` (degrees) shape the ravine only."""
    if name == "rosenbrock":
        return Surface(name, "(1-x)^2 + 100 (y-x^2)^2", _rosenbrock, _rosenbrock_grad, ((1.0, 1.0),), 0.0,
                       (-1.5, 2.0), (-2.0, 2.0), (-1.0, 3.0),
                       {"sgd": 1e-3, "momentum": 5e-4, "nesterov": 5e-4, "adagrad": 0.5, "rmsprop": 5e-3,
                        "adam": 2e-2, "adamw": 2e-2},
                       "a curved banana valley: finding it is easy, following it to (1, 1) is hard")
    if name == "himmelblau":
        return Surface(name, "(x^2+y-11)^2 + (x+y^2-7)^2", _himmelblau, _himmelblau_grad, _HIMMELBLAU_MINIMA, 0.0,
                       (-0.3, 0.2), (-5.0, 5.0), (-5.0, 5.0),
                       {"sgd": 5e-3, "momentum": 1e-3, "nesterov": 1e-3, "adagrad": 0.5, "rmsprop": 1e-2,
                        "adam": 5e-2, "adamw": 5e-2},
                       "four equal minima: which one you reach depends on the optimizer's path")
    if name == "beale":
        return Surface(name, "(1.5-x+xy)^2 + (2.25-x+xy^2)^2 + (2.625-x+xy^3)^2", _beale, _beale_grad,
                       ((3.0, 0.5),), 0.0, (1.0, 1.5), (-4.5, 4.5), (-4.5, 4.5),
                       {"sgd": 5e-3, "momentum": 1e-3, "nesterov": 1e-3, "adagrad": 0.5, "rmsprop": 1e-2,
                        "adam": 5e-2, "adamw": 5e-2},
                       "flat shelves and steep walls: gradients vary over orders of magnitude")
    if name == "saddle":
        return Surface(name, "x^2 - y^2 + y^4/4", _saddle, _saddle_grad, ((0.0, math.sqrt(2)), (0.0, -math.sqrt(2))),
                       -1.0, (-2.0, 1e-3), (-2.5, 2.5), (-2.5, 2.5),
                       {"sgd": 1e-2, "momentum": 1e-2, "nesterov": 1e-2, "adagrad": 0.1, "rmsprop": 1e-2,
                        "adam": 5e-2, "adamw": 5e-2},
                       "a saddle at the origin (x^2 - y^2); the y^4/4 term adds two minima so the loss is bounded")
    if name == "ravine":
        f, g = ravine(condition, angle)
        return Surface(name, f"(u^2 + {condition:g} v^2)/2, (u,v) = (x,y) rotated {angle:g} deg", f, g,
                       ((0.0, 0.0),), 0.0, (-4.5, 1.5), (-5.0, 5.0), (-3.0, 3.0),
                       {"sgd": 1.8 / condition, "momentum": 1.8 / condition, "nesterov": 1.0 / condition,
                        "adagrad": 0.5, "rmsprop": 1e-2, "adam": 5e-2, "adamw": 5e-2},
                       f"an ill-conditioned quadratic: condition number {condition:g}")
    if name == "rastrigin":
        return Surface(name, "20 + sum(x^2 - 10 cos(2 pi x))", _rastrigin, _rastrigin_grad, ((0.0, 0.0),), 0.0,
                       (-2.3, 2.7), (-5.12, 5.12), (-5.12, 5.12),
                       {"sgd": 1e-3, "momentum": 1e-3, "nesterov": 1e-3, "adagrad": 0.5, "rmsprop": 1e-2,
                        "adam": 5e-2, "adamw": 5e-2},
                       "a local minimum near every integer point: local methods stop in the nearest one")
    if name == "plateau":
        return Surface(name, "1 - exp(-(x^2+y^2)/2)", _plateau, _plateau_grad, ((0.0, 0.0),), 0.0,
                       (3.5, -3.0), (-4.0, 4.0), (-4.0, 4.0),
                       {"sgd": 0.5, "momentum": 0.5, "nesterov": 0.5, "adagrad": 0.5, "rmsprop": 1e-2,
                        "adam": 5e-2, "adamw": 5e-2},
                       "an almost flat plain around one well: the raw gradient is ~1e-4 at the start")
    raise ValueError(f"unknown surface {name!r}; choose from {', '.join(SURFACES)}")
