"""The real-network part: HVP power iteration against the exact Hessian, filter normalisation, slices,
a tiny SGD-vs-Adam run that learns on real digits, and resume after an interrupted run."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from p02_optimizers.config import LandscapeConfig
from p02_optimizers.landscape import filter_normalized_direction, hvp, loss_slice, top_hessian_eigenvalue
from p02_optimizers.model import MLP


def _tiny():
    torch.manual_seed(0)
    model = MLP(5, 4, 1, 3).double()
    x = torch.randn(40, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    return model, torch.nn.CrossEntropyLoss(), x, y


def _exact_hessian(model, loss_fn, x, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(theta):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            parts[n] = theta[i:i + k].reshape(s)
            i += k
        return loss_fn(torch.func.functional_call(model, parts, (x,)), y)

    return torch.autograd.functional.hessian(f, flat)


def test_hvp_matches_exact_hessian():
    model, loss_fn, x, y = _tiny()
    h = _exact_hessian(model, loss_fn, x, y)
    v = [torch.randn_like(p) for p in model.parameters()]
    got = torch.cat([t.reshape(-1) for t in hvp(model, loss_fn, x, y, v)])
    want = h @ torch.cat([t.reshape(-1) for t in v])
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_power_iteration_finds_the_top_eigenvalue():
    model, loss_fn, x, y = _tiny()
    ev = torch.linalg.eigvalsh(_exact_hessian(model, loss_fn, x, y))
    top = float(ev[ev.abs().argmax()])
    lam, hist = top_hessian_eigenvalue(model, loss_fn, x, y, iters=500, tol=1e-10)
    assert lam == pytest.approx(top, rel=1e-4)
    assert len(hist) > 1


def test_filter_normalized_direction_matches_filter_norms_and_skips_biases():
    model, *_ = _tiny()
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    for p, u in zip(model.parameters(), d):
        if p.dim() == 1:
            assert torch.count_nonzero(u) == 0
        else:
            torch.testing.assert_close(u.norm(dim=1), p.detach().norm(dim=1), rtol=1e-6, atol=1e-8)


def test_loss_slice_centre_is_the_loss_and_weights_are_restored():
    model, loss_fn, x, y = _tiny()
    before = [p.detach().clone() for p in model.parameters()]
    g = torch.Generator().manual_seed(1)
    z = loss_slice(model, loss_fn, x, y, filter_normalized_direction(model, g),
                   filter_normalized_direction(model, g), span=1.0, grid=5)
    with torch.no_grad():
        assert z[2, 2] == pytest.approx(float(loss_fn(model(x), y)), rel=1e-12)
    assert z.max() > z[2, 2]
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b)


def test_tiny_sgd_vs_adam_learns_on_digits_and_resumes(tmp_path, capsys):
    from p02_optimizers.network import landscape

    cfg = LandscapeConfig(epochs=2, grid=3, hessian_iters=3, hidden=32, layers=1, sgd_lr=0.3, adam_lr=3e-3)
    run_dir = tmp_path / "run"
    landscape(LandscapeConfig(**{**cfg.__dict__, "epochs": 1}), run_dir=str(run_dir))  # "killed" after epoch 1
    res = landscape(cfg, run_dir=str(run_dir), resume=True)
    out = capsys.readouterr().out
    assert "resumed from epoch 1" in out
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert res["sgd"]["test_acc"] > 0.6 and res["adam"]["test_acc"] > 0.8  # chance is 0.1
    assert res["sgd"]["top_hessian_eigenvalue"] > 0 and res["adam"]["top_hessian_eigenvalue"] > 0
    assert 0.85 < res["baseline_logreg_test_acc"] <= 1
    for name in ("slices.png", "loss.png", "report.md", "results.json"):
        assert (Path(run_dir) / name).exists(), name
