"""nn and optim: init statistics, parameters, state_dict, optimizers step-for-step equal to torch.optim."""

import numpy as np
import pytest
import torch

import p01_autodiff.functional as F
from p01_autodiff.nn import MLP, Linear
from p01_autodiff.optim import SGD, Adam
from p01_autodiff.tensor import Tensor


def test_linear_init_scales():
    he = Linear(400, 300, init="he", rng=np.random.default_rng(0))
    xavier = Linear(400, 300, init="xavier", rng=np.random.default_rng(0))
    assert he.weight.data.std() == pytest.approx(np.sqrt(2 / 400), rel=0.03)
    assert xavier.weight.data.std() == pytest.approx(np.sqrt(2 / 700), rel=0.03)
    assert np.all(he.bias.data == 0)
    with pytest.raises(ValueError):
        Linear(2, 2, init="zeros")


def test_mlp_parameters_and_state_dict_roundtrip():
    m = MLP([4, 8, 3], seed=0)
    names = [n for n, _ in m.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    other = MLP([4, 8, 3], seed=1)
    x = Tensor(np.random.default_rng(0).standard_normal((5, 4)))
    assert not np.allclose(m(x).data, other(x).data)
    other.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(m(x).data, other(x).data)
    with pytest.raises(ValueError):
        MLP([4, 9, 3]).load_state_dict(m.state_dict())


def _run_both(make_ours, make_torch, steps=5):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 6)), rng.integers(0, 3, 16)
    ours = MLP([6, 7, 3], seed=0)
    ref = torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3)).double()
    with torch.no_grad():
        for i, layer in enumerate(ours.layers):
            ref[2 * i].weight.copy_(torch.tensor(layer.weight.data.T))
            ref[2 * i].bias.copy_(torch.tensor(layer.bias.data))
    opt, topt = make_ours(ours.parameters()), make_torch(ref.parameters())
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(ours(Tensor(x)), y)
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(ref(torch.tensor(x)), torch.tensor(y))
        tloss.backward()
        topt.step()
        assert loss.item() == pytest.approx(tloss.item(), abs=1e-10)
    for i, layer in enumerate(ours.layers):
        np.testing.assert_allclose(layer.weight.data, ref[2 * i].weight.detach().numpy().T, atol=1e-10)
        np.testing.assert_allclose(layer.bias.data, ref[2 * i].bias.detach().numpy(), atol=1e-10)


def test_sgd_momentum_matches_torch():
    _run_both(lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
              lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3))


def test_adam_matches_torch():
    _run_both(lambda p: Adam(p, lr=0.01, weight_decay=1e-3), lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3))


def test_optimizer_state_dict_roundtrip():
    m = MLP([3, 4, 2], seed=0)
    opt = Adam(m.parameters(), lr=0.01)
    x = Tensor(np.ones((2, 3)))
    F.cross_entropy(m(x), [0, 1]).backward()
    opt.step()
    opt2 = Adam(m.parameters(), lr=0.5)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.lr == 0.01 and opt2.state["t"][0] == 1
    np.testing.assert_array_equal(opt2.state["m"][0], opt.state["m"][0])


def test_small_mlp_overfits_64_examples():
    from dlm_core.data import load_dataset

    ds = load_dataset("digits", seed=0)
    x = ds.train.x[:64].reshape(64, -1).astype(np.float32)
    y = ds.train.y[:64]
    model = MLP([64, 64, 10], seed=0, dtype=np.float32)
    opt = Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        loss = F.cross_entropy(model(Tensor(x)), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.01
    assert (model(Tensor(x)).data.argmax(1) == y).mean() == 1.0
