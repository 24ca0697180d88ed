"""Every hand-written optimizer and schedule follows torch.optim / torch.optim.lr_scheduler step for step:
200 steps on Rosenbrock from the same start, float64, trajectories equal to 1e-8."""

import numpy as np
import pytest
import torch

from p02_optimizers.optim import clip_grad_norm, make_optimizer
from p02_optimizers.schedules import make_schedule
from p02_optimizers.surfaces import get_surface

STEPS = 200
START = (-1.2, 1.0)
SURF = get_surface("rosenbrock")

# (our name, our kwargs, torch class, torch kwargs, lr)
CASES = {
    "sgd": ("sgd", {}, torch.optim.SGD, {}, 1e-3),
    "sgd_wd": ("sgd", {"weight_decay": 0.1}, torch.optim.SGD, {"weight_decay": 0.1}, 1e-3),
    "momentum": ("momentum", {"momentum": 0.9}, torch.optim.SGD, {"momentum": 0.9}, 5e-4),
    "nesterov": ("nesterov", {"momentum": 0.9}, torch.optim.SGD, {"momentum": 0.9, "nesterov": True}, 5e-4),
    "adagrad": ("adagrad", {}, torch.optim.Adagrad, {}, 0.5),
    "rmsprop": ("rmsprop", {}, torch.optim.RMSprop, {}, 5e-3),
    "adam": ("adam", {}, torch.optim.Adam, {}, 2e-2),
    "adam_l2": ("adam", {"weight_decay": 0.1, "betas": (0.8, 0.99)}, torch.optim.Adam,
                {"weight_decay": 0.1, "betas": (0.8, 0.99)}, 2e-2),
    "adamw": ("adamw", {}, torch.optim.AdamW, {}, 2e-2),
    "adamw_wd": ("adamw", {"weight_decay": 0.3}, torch.optim.AdamW, {"weight_decay": 0.3}, 2e-2),
}


def ours_path(name, kw, lr, lr_at=None, clip=None):
    p = np.array(START)
    opt = make_optimizer(name, [p], lr, clip_norm=clip, **kw)
    out = [p.copy()]
    for t in range(STEPS):
        if lr_at is not None:
            opt.lr = lr_at(t)
        opt.step([SURF.gradient(p)])
        out.append(p.copy())
    return np.array(out)


def torch_path(cls, kw, lr, scheduler=None, clip=None):
    w = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    opt = cls([w], lr=lr, **kw)
    sched = scheduler(opt) if scheduler else None
    out = [w.detach().numpy().copy()]
    for _ in range(STEPS):
        opt.zero_grad()
        w.grad = torch.from_numpy(SURF.gradient(w.detach().numpy()))  # the same analytic gradient for both
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([w], clip)
        opt.step()
        if sched:
            sched.step()
        out.append(w.detach().numpy().copy())
    return np.array(out)


@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_matches_torch(case):
    name, kw, cls, tkw, lr = CASES[case]
    ours, ref = ours_path(name, kw, lr), torch_path(cls, tkw, lr)
    assert np.abs(ours[-1] - ours[0]).max() > 1e-2  # it really moved
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_grad_clipping_matches_torch(name):
    _, kw, cls, tkw, lr = CASES[name]
    ours, ref = ours_path(name, kw, lr, clip=1.0), torch_path(cls, tkw, lr, clip=1.0)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)
    assert np.abs(ours - ours_path(name, kw, lr)).max() > 1e-3  # clipping changed the path


def test_clip_grad_norm_values():
    grads, norm = clip_grad_norm([np.array([3.0, 4.0]), np.array([12.0])], 1.0)
    assert norm == pytest.approx(13.0)
    assert float(np.sqrt(sum((g * g).sum() for g in grads))) == pytest.approx(1.0, rel=1e-6)
    same, _ = clip_grad_norm([np.array([0.3, 0.4])], 1.0)
    np.testing.assert_array_equal(same[0], [0.3, 0.4])


LS = torch.optim.lr_scheduler
SCHEDULES = {
    "constant": ({}, lambda o: LS.LambdaLR(o, lambda t: 1.0)),
    "step": ({"step_size": 30, "gamma": 0.5}, lambda o: LS.StepLR(o, step_size=30, gamma=0.5)),
    "exponential": ({"decay": 0.99}, lambda o: LS.ExponentialLR(o, gamma=0.99)),
    "cosine": ({"lr_min": 1e-4}, lambda o: LS.CosineAnnealingLR(o, T_max=STEPS, eta_min=1e-4)),
    "warmup_cosine": ({"warmup": 20, "warmup_start": 0.01, "lr_min": 0.0}, lambda o: LS.SequentialLR(
        o, [LS.LinearLR(o, start_factor=0.01, end_factor=1.0, total_iters=20),
            LS.CosineAnnealingLR(o, T_max=STEPS - 20, eta_min=0.0)], milestones=[20])),
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_schedule_matches_torch(schedule, opt):
    name, kw, cls, tkw, lr = CASES[opt]
    skw, make_torch = SCHEDULES[schedule]
    lr_at = make_schedule(schedule, lr, STEPS, **skw)
    ours = ours_path(name, kw, lr, lr_at=lr_at)
    ref = torch_path(cls, tkw, lr, scheduler=make_torch)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)
    if schedule != "constant":  # the schedule mattered
        assert np.abs(ours - ours_path(name, kw, lr)).max() > 1e-4


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_schedule_lr_values_match_torch(schedule):
    skw, make_torch = SCHEDULES[schedule]
    lr_at = make_schedule(schedule, 0.1, STEPS, **skw)
    w = torch.zeros(1, requires_grad=True, dtype=torch.float64)
    opt = torch.optim.SGD([w], lr=0.1)
    sched = make_torch(opt)
    for t in range(STEPS):
        assert lr_at(t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-10, abs=1e-15), t
        opt.step()
        sched.step()


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"])
def test_float32_params_stay_float32(name):
    """No silent upcast to float64 (a numpy-2 scalar-promotion trap that once made our Adam 5x slower)."""
    p = np.ones(4, dtype=np.float32)
    opt = make_optimizer(name, [p], 1e-2, clip_norm=1.0)
    for _ in range(3):
        opt.step([np.full(4, 0.5, dtype=np.float32)])
    assert p.dtype == np.float32 and all(v.dtype == np.float32 for v in opt.state[0].values()
                                          if isinstance(v, np.ndarray))
