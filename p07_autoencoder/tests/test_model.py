"""Autoencoder shapes and the per-input error wrapper that the ONNX export returns."""

import torch

from p07_autoencoder.model import Conv1dAE, ConvAE, DenseAE, ErrorModel, build_model


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
