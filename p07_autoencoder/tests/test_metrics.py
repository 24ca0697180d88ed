"""Threshold, metrics and score aggregation against sklearn and brute force."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from p07_autoencoder.data import point_scores, windows
from p07_autoencoder.evaluate import best_f1_threshold, metrics_at, threshold_at_fpr


@pytest.mark.parametrize("n,fpr,seed", [(100, 0.01, 0), (1000, 0.01, 1), (537, 0.05, 2), (20, 0.1, 3), (999, 0.2, 4)])
def test_threshold_gives_target_fpr_on_validation(n, fpr, seed):
    val = np.random.default_rng(seed).lognormal(size=n)
    t = threshold_at_fpr(val, fpr)
    above = int((val > t).sum())
    assert abs(above - fpr * n) <= 1, (above, fpr * n)


def test_threshold_with_ties_never_exceeds_target():
    val = np.array([1.0] * 50 + [2.0] * 50)
    t = threshold_at_fpr(val, 0.3)
    assert (val > t).mean() <= 0.3 + 1 / len(val)


def test_metrics_equal_sklearn_on_fixed_example():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(int)
    s = rng.normal(size=300) + 1.5 * y
    m = metrics_at(y, s, 0.7)
    pred = (s > 0.7).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (tp, fp, fn, tn)
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["fpr"] == pytest.approx(fp / (fp + tn))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s))


def test_best_f1_threshold_is_the_brute_force_optimum():
    rng = np.random.default_rng(1)
    y = (rng.random(200) < 0.4).astype(int)
    s = rng.normal(size=200) + y
    t, f1 = best_f1_threshold(y, s)
    brute = max(f1_score(y, (s > c).astype(int)) for c in np.concatenate([[-np.inf], s]))
    assert f1 == pytest.approx(brute)
    assert f1_score(y, (s > t).astype(int)) == pytest.approx(f1)


def test_point_scores_average_the_covering_windows():
    rng = np.random.default_rng(2)
    n_points, w = 30, 6
    err = rng.random((n_points - w + 1, w))
    got = point_scores(err, n_points)
    for p in range(n_points):
        cover = [err[i, p - i] for i in range(len(err)) if i <= p < i + w]
        assert got[p] == pytest.approx(np.mean(cover))
    z = np.arange(10, dtype=np.float32)
    win = windows(z, 4)
    assert win.shape == (7, 1, 4) and win[3, 0].tolist() == [3, 4, 5, 6]


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_residual_blur_equals_scipy_gaussian_filter(sigma):
    import torch
    from scipy.ndimage import gaussian_filter

    from p07_autoencoder.model import ErrorModel, ResidualBlur, residual_errors

    r = np.random.default_rng(0).normal(size=(3, 1, 28, 28)).astype(np.float32)
    ours = ResidualBlur(sigma)(torch.from_numpy(r)).numpy()
    ref = gaussian_filter(r, (0, 0, sigma, sigma), mode="constant", truncate=4.0)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(residual_errors(r, sigma), ref ** 2, atol=1e-5)
    assert np.abs(ours).sum() < np.abs(r).sum()  # a real smoothing, not the identity
    np.testing.assert_array_equal(ResidualBlur(0.0)(torch.from_numpy(r)).numpy(), r)
    # the exported scorer applies the same blur: zero-reconstruction AE -> error = mean(blur(-x)^2)
    zero_ae = torch.nn.Module()
    zero_ae.forward = lambda x: torch.zeros_like(x)
    np.testing.assert_allclose(ErrorModel(zero_ae, sigma)(torch.from_numpy(r)).numpy(), (ref ** 2).mean((1, 2, 3)),
                               rtol=1e-4)
