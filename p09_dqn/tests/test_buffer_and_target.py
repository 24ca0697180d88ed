"""Replay buffer mechanics and the TD target, against hand computations."""

import numpy as np
import pytest
import torch
from torch import nn

from p09_dqn.config import DQNConfig
from p09_dqn.data import ReplayBuffer
from p09_dqn.train import linear_epsilon, linear_lr, td_target, update_target


def test_buffer_wraps_around_and_overwrites_oldest():
    buf = ReplayBuffer(capacity=4, obs_dim=2)
    for i in range(6):  # 6 writes into 4 slots: transitions 0 and 1 are overwritten by 4 and 5
        buf.add(np.full(2, i), action=i % 2, reward=float(i), next_obs=np.full(2, i + 1), terminated=(i == 5))
    assert len(buf) == 4 and buf.pos == 2
    assert buf.rewards.tolist() == [4.0, 5.0, 2.0, 3.0]
    assert buf.obs[:, 0].tolist() == [4.0, 5.0, 2.0, 3.0]
    assert buf.next_obs[:, 0].tolist() == [5.0, 6.0, 3.0, 4.0]
    assert buf.terminated.tolist() == [0.0, 1.0, 0.0, 0.0]  # the flag stays with its own transition


def test_buffer_sample_shapes_dtypes_and_consistency():
    buf = ReplayBuffer(capacity=100, obs_dim=3)
    for i in range(30):
        buf.add(np.arange(3) + i, action=i % 3, reward=float(i), next_obs=np.arange(3) + i + 1, terminated=i % 7 == 0)
    b = buf.sample(16, np.random.default_rng(0))
    assert b["obs"].shape == (16, 3) and b["next_obs"].shape == (16, 3)
    assert b["actions"].shape == b["rewards"].shape == b["terminated"].shape == (16,)
    assert b["obs"].dtype == np.float32 and b["actions"].dtype == np.int64 and b["rewards"].dtype == np.float32
    assert b["terminated"].dtype == np.float32
    i = b["rewards"].astype(int)  # reward i identifies transition i: every field must come from the same row
    assert (b["obs"][:, 0] == i).all() and (b["next_obs"][:, 0] == i + 1).all()
    assert (b["actions"] == i % 3).all() and (b["terminated"] == (i % 7 == 0)).all()
    assert (i < 30).all()  # never samples unwritten slots


def test_buffer_state_dict_round_trip():
    buf = ReplayBuffer(capacity=5, obs_dim=2)
    for i in range(7):
        buf.add(np.full(2, i), i % 2, float(i), np.full(2, i + 1), i == 3)
    other = ReplayBuffer(capacity=5, obs_dim=2)
    other.load_state_dict(buf.state_dict())
    assert (other.pos, other.size) == (buf.pos, buf.size)
    for k in ("obs", "next_obs", "actions", "rewards", "terminated"):
        assert np.array_equal(getattr(other, k), getattr(buf, k))


class Fixed(nn.Module):
    """Q(s) = s @ w: a hand-checkable 'network'."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float32))

    def forward(self, x):
        return x @ self.w


def _batch():
    # rows: an ordinary step, a termination (pole fell), a time-limit truncation (stored with terminated=0)
    rewards = torch.tensor([1.0, 1.0, 0.5])
    next_obs = torch.tensor([[2.0, 5.0], [3.0, 1.0], [4.0, 7.0]])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    return rewards, next_obs, terminated


def test_td_target_vanilla_by_hand():
    target = Fixed([[1.0, 0.0], [0.0, 1.0]])  # Q_target(s') = s'
    y = td_target(*_batch(), gamma=0.9, target_net=target)
    # 1 + 0.9 * max(2, 5); terminated: reward only; truncated: bootstraps, 0.5 + 0.9 * max(4, 7)
    assert torch.allclose(y, torch.tensor([1 + 0.9 * 5, 1.0, 0.5 + 0.9 * 7]))


def test_td_target_double_dqn_by_hand():
    target = Fixed([[1.0, 0.0], [0.0, 1.0]])  # Q_target(s') = s'
    online = Fixed([[0.0, 1.0], [1.0, 0.0]])  # Q_online(s') = s' with columns swapped: picks argmin of s'
    y = td_target(*_batch(), gamma=0.9, target_net=target, online_net=online)
    # online picks a* = [0, 1, 0]; the target values it: [2, 1, 4]; the terminated row ignores it
    assert torch.allclose(y, torch.tensor([1 + 0.9 * 2, 1.0, 0.5 + 0.9 * 4]))
    assert not torch.allclose(y, td_target(*_batch(), gamma=0.9, target_net=target))


def test_target_update_hard_and_polyak():
    online, target = Fixed([[1.0, 2.0], [3.0, 4.0]]), Fixed([[0.0, 0.0], [0.0, 0.0]])
    update_target(target, online, tau=0.25)
    assert torch.allclose(target.w, 0.25 * online.w)
    update_target(target, online, tau=1.0)
    assert torch.equal(target.w, online.w)


def test_linear_epsilon_schedule():
    cfg = DQNConfig(total_steps=1000, eps_start=1.0, eps_end=0.1, exploration_fraction=0.5)
    assert linear_epsilon(0, cfg) == 1.0
    assert linear_epsilon(250, cfg) == pytest.approx(0.55)
    assert linear_epsilon(500, cfg) == pytest.approx(0.1)
    assert linear_epsilon(900, cfg) == pytest.approx(0.1)


def test_linear_lr_schedule():
    cfg = DQNConfig(total_steps=1000, lr=1e-3, lr_end=1e-4, lr_decay_fraction=0.5)
    assert linear_lr(0, cfg) == pytest.approx(1e-3)
    assert linear_lr(250, cfg) == pytest.approx(5.5e-4)
    assert linear_lr(500, cfg) == pytest.approx(1e-4)
    assert linear_lr(900, cfg) == pytest.approx(1e-4)
    assert linear_lr(900, DQNConfig(total_steps=1000, lr=1e-3, lr_end=None)) == 1e-3  # no decay
    with pytest.raises(Exception, match="--lr-end"):
        DQNConfig(lr=1e-4, lr_end=1e-3)
    # lr_final: on from lr_end at the knee to lr_final at total_steps
    tail = DQNConfig(total_steps=1000, lr=1e-3, lr_end=1e-4, lr_decay_fraction=0.5, lr_final=0.0)
    assert linear_lr(250, tail) == pytest.approx(5.5e-4)
    assert linear_lr(500, tail) == pytest.approx(1e-4)
    assert linear_lr(750, tail) == pytest.approx(5e-5)
    assert linear_lr(1000, tail) == pytest.approx(0.0)
    with pytest.raises(Exception, match="--lr-final"):
        DQNConfig(lr_final=0.0)
    with pytest.raises(Exception, match="--eval-ema"):
        DQNConfig(eval_ema=1.0)


def test_nstep_transitions_by_hand():
    from p09_dqn.data import nstep_transitions

    g = 0.9
    o = [np.full(2, i, dtype=np.float32) for i in range(5)]
    q = [(o[0], 0, 1.0), (o[1], 1, 2.0), (o[2], 0, 4.0)]  # n = 3 steps queued, the episode goes on
    out = nstep_transitions(q, o[3], False, g, flush=False)
    assert len(out) == 1 and len(q) == 2  # the oldest step leaves the queue
    obs, a, ret, nxt, term, disc = out[0]
    assert obs is o[0] and a == 0 and nxt is o[3] and term is False
    assert ret == pytest.approx(1.0 + 0.9 * 2.0 + 0.81 * 4.0) and disc == pytest.approx(0.9 ** 3)
    # the pole falls after one more step (reward 8): every queued step gets the rewards up to the end, no bootstrap
    q.append((o[3], 1, 8.0))
    out = nstep_transitions(q, o[4], True, g, flush=True)
    assert q == [] and [t[0][0] for t in out] == [1.0, 2.0, 3.0]
    assert [t[2] for t in out] == pytest.approx([2.0 + 0.9 * 4.0 + 0.81 * 8.0, 4.0 + 0.9 * 8.0, 8.0])
    assert [t[5] for t in out] == pytest.approx([0.9 ** 3, 0.9 ** 2, 0.9])
    assert all(t[4] is True and t[3] is o[4] for t in out)
    # a time limit (truncation) flushes too but keeps terminated False: those targets still bootstrap
    q = [(o[0], 0, 1.0), (o[1], 1, 1.0)]
    out = nstep_transitions(q, o[2], False, g, flush=True)
    assert [t[4] for t in out] == [False, False] and [t[5] for t in out] == pytest.approx([0.81, 0.9])


def test_nstep_one_is_the_one_step_transition():
    from p09_dqn.data import nstep_transitions

    o0, o1 = np.zeros(2, dtype=np.float32), np.ones(2, dtype=np.float32)
    q = [(o0, 1, 1.0)]
    (obs, a, ret, nxt, term, disc), = nstep_transitions(q, o1, False, 0.99, flush=False)
    assert (obs is o0, a, ret, nxt is o1, term, disc) == (True, 1, 1.0, True, False, 0.99)


def test_nstep_td_target_uses_per_transition_discount():
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    next_obs = torch.tensor([[3.0, 5.0], [3.0, 5.0]])
    y = td_target(torch.tensor([2.71, 1.0]), next_obs, torch.tensor([0.0, 0.0]), torch.tensor([0.729, 0.9]), net)
    assert y.tolist() == pytest.approx([2.71 + 0.729 * 5.0, 1.0 + 0.9 * 5.0])


def test_reserve_keeps_terminations_and_fills_its_share():
    from p09_dqn.data import sample_with_reserve

    buf, res = ReplayBuffer(capacity=1000, obs_dim=1), ReplayBuffer(capacity=10, obs_dim=1)
    for i in range(1000):  # one fall in 100 transitions; in the ring only the latest 1000 stay
        term = i % 100 == 99
        buf.add(np.full(1, i), 0, 1.0, np.full(1, i + 1), term)
        if term:
            res.add(np.full(1, i), 0, 1.0, np.full(1, i + 1), term)
    assert len(res) == 10 and res.terminated.all()
    rng = np.random.default_rng(0)
    b = sample_with_reserve(buf, res, 0.25, 128, rng)
    assert b["obs"].shape == (128, 1) and (b["terminated"][:32] == 1).all()  # round(0.25 * 128) = 32 failures
    assert b["terminated"].sum() >= 32
    # no reserve, an empty one or share 0: a plain uniform sample, same rng draws
    for r, share in ((None, 0.25), (ReplayBuffer(10, 1), 0.25), (res, 0.0)):
        x = sample_with_reserve(buf, r, share, 64, np.random.default_rng(1))
        y = buf.sample(64, np.random.default_rng(1))
        assert all(np.array_equal(x[k], y[k]) for k in y)


def test_new_fields_are_checked():
    from dlm_core.errors import DlmError

    for bad in ({"n_step": 0}, {"terminal_share": 1.0}, {"terminal_share": -0.1}, {"terminal_buffer_size": 0}):
        with pytest.raises(DlmError):
            DQNConfig(**bad)
