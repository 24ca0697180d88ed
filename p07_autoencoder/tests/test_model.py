"""Autoencoder shapes and the per-input error wrapper that the ONNX export returns."""

import numpy as np
import torch

from p07_autoencoder.model import Conv1dAE, ConvAE, DenseAE, ErrorModel, Scorer, build_model, code_stats, image_scores


def test_shapes_round_trip():
    torch.manual_seed(0)
    assert ConvAE(8, 4)(torch.rand(3, 1, 28, 28)).shape == (3, 1, 28, 28)
    assert DenseAE(9, 3, 16)(torch.randn(5, 9)).shape == (5, 9)
    assert Conv1dAE(64, 8, 4)(torch.randn(2, 1, 64)).shape == (2, 1, 64)
    assert isinstance(build_model("series", [1, 32], 4, 4), Conv1dAE)


def test_error_model_is_mean_squared_error_per_input():
    torch.manual_seed(0)
    ae = DenseAE(9, 3, 16)
    x = torch.randn(4, 9)
    err = ErrorModel(ae)(x)
    assert err.shape == (4,)
    for i in range(4):
        assert torch.allclose(err[i], torch.nn.functional.mse_loss(ae(x[i:i + 1]), x[i:i + 1]))


def test_scorer_adds_the_standardised_code_distance():
    torch.manual_seed(0)
    ae = ConvAE(4, 4).eval()
    rng = np.random.default_rng(0)
    x_train, x_val, x = (rng.random((n, 1, 28, 28), dtype=np.float32) for n in (300, 50, 20))
    assert np.allclose(image_scores(Scorer(ae, 1.0), x), image_scores(ErrorModel(ae, 1.0), x))  # no stats: error
    stats = code_stats(ae, x_train, x_val, 1.0, 0.5)
    # the same rule by hand, in float64: z(error) + 0.5 z(Mahalanobis^2 of the code under the training Gaussian)
    codes = lambda a: ae.encoder(torch.from_numpy(a)).detach().double().numpy()
    error = lambda a: image_scores(ErrorModel(ae, 1.0), a)
    c = codes(x_train)
    prec = np.linalg.inv(np.cov(c, rowvar=False) + 1e-6 * np.eye(4))
    dist = lambda a: np.einsum("ni,ij,nj->n", codes(a) - c.mean(0), prec, codes(a) - c.mean(0))
    z = lambda v, e: (e - v.mean()) / v.std()
    want = z(error(x_val), error(x)) + 0.5 * z(dist(x_val), dist(x))
    np.testing.assert_allclose(image_scores(Scorer(ae, 1.0, stats), x), want, rtol=1e-4, atol=1e-4)
