"""Analytic gradients against central finite differences; every listed minimum is stationary and at f_min."""

import numpy as np
import pytest

from p02_optimizers.surfaces import SURFACES, get_surface

VARIANTS = [(name, {}) for name in SURFACES] + [("ravine", {"condition": 1000.0, "angle": 30.0})]


@pytest.mark.parametrize("name,kw", VARIANTS)
def test_gradient_matches_finite_differences(name, kw):
    s = get_surface(name, **kw)
    rng = np.random.default_rng(0)
    h = 1e-6
    for _ in range(20):
        p = np.array([rng.uniform(*s.xlim), rng.uniform(*s.ylim)])
        g = s.gradient(p)
        fd = np.array([(s.loss(p + h * e) - s.loss(p - h * e)) / (2 * h) for e in np.eye(2)])
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5 * (1 + np.abs(fd).max()))


@pytest.mark.parametrize("name,kw", VARIANTS)
def test_known_minima_have_zero_gradient_and_min_value(name, kw):
    s = get_surface(name, **kw)
    for m in s.minima:
        p = np.array(m)
        assert np.abs(s.gradient(p)).max() < 1e-9, (name, m, s.gradient(p))
        assert s.loss(p) == pytest.approx(s.f_min, abs=1e-12)
        # a true minimum: every nearby point is higher
        for d in [(1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3), (7e-4, 7e-4)]:
            assert s.loss(p + np.array(d)) > s.f_min


def test_saddle_point_is_stationary_but_not_a_minimum():
    s = get_surface("saddle")
    assert np.abs(s.gradient(np.zeros(2))).max() == 0
    assert s.loss(np.array([0.0, 0.1])) < s.loss(np.zeros(2)) < s.loss(np.array([0.1, 0.0]))


def test_ravine_condition_number_is_exact():
    for cond, angle in [(10.0, 0.0), (500.0, 37.0)]:
        s = get_surface("ravine", condition=cond, angle=angle)
        h = np.array([s.gradient(e) for e in np.eye(2)]).T  # quadratic: the Hessian's columns are grad(e_i)
        ev = np.linalg.eigvalsh((h + h.T) / 2)
        assert ev.max() / ev.min() == pytest.approx(cond, rel=1e-9)


def test_unknown_surface_is_an_error():
    with pytest.raises(ValueError):
        get_surface("nope")
