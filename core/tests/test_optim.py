"""dlm_core.optim.decay_groups: the one weight-decay split, equal to the three hand-written copies it replaced
(p03's, p04's, p06's, kept below as they were) on those projects' real models: the same parameters, in the same
order, in the same groups, so optimizer states and checkpoints are unchanged."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from dlm_core.optim import cosine_decay, decay_groups, warmup_cosine


def p03_groups(model, wd):  # p03_cnn.train.make_optimizer before dlm_core.optim
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def p04_groups(model, wd):  # p04_rnn.train.make_optimizer before dlm_core.optim
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.startswith("embed")]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.startswith("embed"))]
    return [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]


def p06_groups(model, wd):  # p06_contrastive.train.run_train before dlm_core.optim
    def decayed(name, p):
        return p.ndim >= 2 and "pos" not in name and "token_weight" not in name

    decay = [p for n, p in model.named_parameters() if decayed(n, p)]
    rest = [p for n, p in model.named_parameters() if not decayed(n, p) and p.requires_grad]
    return [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]


def same(a: list[dict], b: list[dict]) -> bool:
    return [(g["weight_decay"], [id(p) for p in g["params"]]) for g in a] == \
        [(g["weight_decay"], [id(p) for p in g["params"]]) for g in b]


def test_matrices_decay_vectors_and_exempt_and_frozen_ones_do_not():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[3].bias.requires_grad_(False)
    groups = decay_groups(model, 0.1, exempt=lambda name, p: name.startswith("0."))
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [id(p) for p in groups[0]["params"]] == [id(model[1].weight), id(model[3].weight)]
    assert [id(p) for p in groups[1]["params"]] == [id(model[0].weight), id(model[1].bias), id(model[2].weight),
                                                     id(model[2].bias)]


def test_equal_to_p03s_split():
    from p03_cnn.config import PRESETS
    from p03_cnn.model import model_for

    for cfg in [*PRESETS.values(), dataclasses.replace(PRESETS["tiny"], arch="plain")]:
        model = model_for(cfg)
        assert same(decay_groups(model, cfg.weight_decay), p03_groups(model, cfg.weight_decay)), cfg


def test_equal_to_p04s_split():
    from p04_rnn.model import CharRNN

    for cell in ("lstm", "gru", "rnn", "hand-lstm"):
        model = CharRNN(65, cell, 16, 32, 2, 0.1)
        new = decay_groups(model, 0.01, exempt=lambda name, p: name.startswith("embed"))
        assert same(new, p04_groups(model, 0.01)), cell


@pytest.mark.parametrize("kw", [{}, {"layers": 1}, {"learn_temperature": False}, {"pool": "mean"},
                                {"lexical_dim": 16}, {"asymmetric": False}])
def test_equal_to_p06s_split(kw):
    from p06_contrastive.config import PRESETS
    from p06_contrastive.model import ContrastiveModel, build_encoder

    cfg = dataclasses.replace(PRESETS["tiny"], **kw)
    model = ContrastiveModel(build_encoder(cfg, 300), cfg.temperature, cfg.learn_temperature)
    new = decay_groups(model, cfg.weight_decay, exempt=lambda name, p: "pos" in name or "token_weight" in name)
    assert same(new, p06_groups(model, cfg.weight_decay))
    assert len(new[0]["params"]) and len(new[1]["params"])


def test_an_optimizer_on_the_groups_steps_like_the_old_one():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    b.load_state_dict(a.state_dict())
    opts = [torch.optim.AdamW(decay_groups(a, 0.1), lr=0.1), torch.optim.AdamW(p03_groups(b, 0.1), lr=0.1)]
    x = torch.randn(8, 3)
    for _ in range(3):
        for m, o in zip((a, b), opts):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert str(opts[0].state_dict()) == str(opts[1].state_dict())


# The cosine schedules as p03-p06 wrote them before dlm_core.optim, kept here: the shared functions must give
# the same floats bit for bit, so that no README number moves.
def old_p03(lr, schedule, warm, step, total):
    t = min(step / max(1, total), 1.0)
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * t))
    if t < warm:
        return lr / 25 + (lr - lr / 25) * t / warm
    u = (t - warm) / (1 - warm)
    return lr * 1e-4 + (lr - lr * 1e-4) * 0.5 * (1 + math.cos(math.pi * u))


def old_p04(step, lr, warmup, max_steps, min_lr_ratio):
    if step <= warmup:
        return lr * step / warmup
    progress = (step - warmup) / max(1, max_steps - warmup)
    floor = lr * min_lr_ratio
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def old_p05(step, warmup, total):  # a multiplier for LambdaLR
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def old_p06(step, total, lr, warmup):
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@pytest.mark.parametrize("lr", [0.1, 3e-4, 8e-4, 1e-2, 2e-3])
def test_schedules_equal_the_copies_they_replaced_bit_for_bit(lr):
    from p03_cnn.config import CNNConfig
    from p03_cnn.train import lr_at as p03_lr
    from p04_rnn.config import RNNConfig
    from p04_rnn.train import lr_at as p04_lr

    total, warmup = 1234, 97
    for schedule in ("onecycle", "cosine"):
        cfg = CNNConfig(lr=lr, schedule=schedule)
        assert [p03_lr(cfg, s, total) for s in range(total + 3)] == \
            [old_p03(lr, schedule, cfg.warmup, s, total) for s in range(total + 3)]
    rcfg = RNNConfig(lr=lr, warmup_steps=warmup, max_steps=total, min_lr_ratio=0.1)
    assert [p04_lr(s, rcfg) for s in range(1, total + 3)] == \
        [old_p04(s, lr, warmup, total, 0.1) for s in range(1, total + 3)]
    assert [warmup_cosine(s, total, warmup, 1.0) for s in range(total + 3)] == \
        [old_p05(s, warmup, total) for s in range(total + 3)]
    assert [warmup_cosine(s, total, warmup, lr) for s in range(total + 3)] == \
        [old_p06(s, total, lr, warmup) for s in range(total + 3)]
    # the GRU baseline of p05: cosine over a time fraction
    fracs = [i / 997 for i in range(998)]
    assert [cosine_decay(f, lr) for f in fracs] == [lr * 0.5 * (1 + math.cos(math.pi * f)) for f in fracs]


def test_warmup_cosine_shape():
    lrs = [warmup_cosine(s, 100, 10, 1.0, floor=0.1) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == 1.0 and lrs[10] == 1.0   # ramp ends on the peak
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))                     # then never rises
    assert lrs[100] == pytest.approx(0.1) and lrs[109] == pytest.approx(0.1)   # floor, held past total
    assert lrs[55] == pytest.approx(0.55)                                      # half way down
