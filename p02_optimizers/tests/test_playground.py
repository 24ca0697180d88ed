"""Behaviour of the 2D playground: optimizers reach the minima, momentum beats SGD on the ravine, seeded noise
is reproducible, divergence is detected."""

import numpy as np
import pytest

from p02_optimizers.config import PlaygroundConfig
from p02_optimizers.optim import OPTIMIZERS
from p02_optimizers.surfaces import get_surface
from p02_optimizers.train import run_path


def test_momentum_beats_sgd_on_the_ravine_in_steps_to_tolerance():
    cfg = PlaygroundConfig(surface="ravine", condition=100.0, steps=2000, tol=1e-6)
    s = get_surface("ravine", condition=100.0)
    lr = 1.0 / 100  # the same lr for both, well inside SGD's stable range (< 2 / condition)
    sgd, mom = run_path(cfg, s, "sgd", lr=lr), run_path(cfg, s, "momentum", lr=lr)
    assert sgd.steps_to_tol is not None and mom.steps_to_tol is not None
    assert mom.steps_to_tol * 3 < sgd.steps_to_tol, (mom.steps_to_tol, sgd.steps_to_tol)
    # and the gap grows with the condition number (SGD ~ kappa steps, momentum ~ sqrt(kappa))
    cfg2 = PlaygroundConfig(surface="ravine", condition=1000.0, steps=20000, tol=1e-6)
    s2 = get_surface("ravine", condition=1000.0)
    sgd2, mom2 = run_path(cfg2, s2, "sgd", lr=1e-3), run_path(cfg2, s2, "momentum", lr=1e-3)
    assert sgd2.steps_to_tol / mom2.steps_to_tol > sgd.steps_to_tol / mom.steps_to_tol


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_reaches_the_ravine_minimum_with_its_default_lr(name):
    cfg = PlaygroundConfig(surface="ravine", steps=1500)
    r = run_path(cfg, get_surface("ravine"), name)
    assert r.diverged_at is None
    assert r.final_loss < 1e-3 and r.distance < 0.05, (name, r.final_loss, r.distance)


def test_adam_crosses_the_plateau_where_sgd_stalls():
    cfg = PlaygroundConfig(surface="plateau", steps=500)
    s = get_surface("plateau")
    sgd, adam = run_path(cfg, s, "sgd"), run_path(cfg, s, "adam")
    assert sgd.final_loss > 0.99  # barely moved: the gradient is ~1e-4 out there
    assert adam.final_loss < 1e-3


def test_seeded_noise_is_reproducible_and_seed_dependent():
    s = get_surface("himmelblau")
    a = run_path(PlaygroundConfig(surface="himmelblau", steps=300, noise=0.5, seed=3), s, "sgd")
    b = run_path(PlaygroundConfig(surface="himmelblau", steps=300, noise=0.5, seed=3), s, "sgd")
    c = run_path(PlaygroundConfig(surface="himmelblau", steps=300, noise=0.5, seed=4), s, "sgd")
    np.testing.assert_array_equal(a.path, b.path)
    assert np.abs(a.path - c.path).max() > 1e-3


def test_divergence_is_detected_not_propagated():
    cfg = PlaygroundConfig(surface="ravine", steps=500)
    r = run_path(cfg, get_surface("ravine"), "sgd", lr=0.05)  # > 2 / condition: unstable
    assert r.diverged_at is not None and r.diverged_at < 500
    assert np.isnan(r.final_loss) and len(r.path) == r.diverged_at + 1


def test_schedule_and_clipping_are_applied():
    s = get_surface("rosenbrock")
    r = run_path(PlaygroundConfig(steps=100, schedule="cosine", lr=0.01), s, "adam")
    assert r.lrs[0] == pytest.approx(0.01) and r.lrs[-1] < 1e-5
    clipped = run_path(PlaygroundConfig(steps=1, clip=0.1, lr=0.01), s, "sgd")
    assert np.linalg.norm(clipped.path[1] - clipped.path[0]) == pytest.approx(0.01 * 0.1, rel=1e-4)
