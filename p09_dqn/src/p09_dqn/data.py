"""The "data" of RL: the gymnasium environments, their seeds, and the replay buffer that stores what they said.

Seeds never overlap: the training env uses `seed`, validation episodes (model selection, early stop) use
VAL_BASE + ..., the final test episodes TEST_BASE + ... . The test seeds are touched once, at the end.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from dlm_core.errors import DlmError

VAL_BASE = 1_000_000
TEST_BASE = 2_000_000


def val_seeds(seed: int, n: int) -> list[int]:
    return [VAL_BASE + 1_000 * seed + i for i in range(n)]


def test_seeds(seed: int, n: int) -> list[int]:
    return [TEST_BASE + 1_000 * seed + i for i in range(n)]


def make_env(env_id: str, render_mode: str | None = None, max_episode_steps: int | None = None):
    """gym.make with a clear DlmError for unknown ids and unsupported spaces (Box obs, Discrete actions)."""
    try:
        env = gym.make(env_id, render_mode=render_mode, max_episode_steps=max_episode_steps)
    except gym.error.Error as err:
        raise DlmError(f"--env {env_id!r}: {str(err).splitlines()[0]} "
                       "(try CartPole-v1, Acrobot-v1 or MountainCar-v0)") from None
    except ImportError as err:
        raise DlmError(f"--env {env_id!r} needs a package that is not installed: {err}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete) or not isinstance(env.observation_space, gym.spaces.Box):
        env.close()
        raise DlmError(f"--env {env_id!r}: DQN needs a Box observation and Discrete actions; "
                       "try CartPole-v1, Acrobot-v1 or MountainCar-v0")
    return env


def env_dims(env) -> tuple[int, int]:
    return int(np.prod(env.observation_space.shape)), int(env.action_space.n)


class ReplayBuffer:
    """A preallocated numpy ring: once full, the oldest transition is overwritten.

    Each transition keeps `terminated` (the MDP ended: no bootstrap) apart from truncation (a time limit:
    the target still bootstraps from next_obs), so only `terminated` is stored for the target. `discount` is
    the factor in front of V(next_obs): gamma for a one-step transition, gamma^k for an n-step one that
    sums k rewards (fewer than n at an episode end).
    """

    def __init__(self, capacity: int, obs_dim: int):
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.ones(capacity, dtype=np.float32)
        self.pos = 0  # next slot to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action: int, reward: float, next_obs, terminated: bool, discount: float = 1.0) -> None:
        i = self.pos
        self.obs[i] = obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = float(terminated)
        self.discounts[i] = discount
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self.size == 0:
            raise ValueError("sample() from an empty replay buffer")
        idx = rng.integers(0, self.size, size=batch_size)
        return {"obs": self.obs[idx], "actions": self.actions[idx], "rewards": self.rewards[idx],
                "next_obs": self.next_obs[idx], "terminated": self.terminated[idx], "discounts": self.discounts[idx]}

    # checkpoints hold tensors and plain values only (torch.load weights_only=True)
    def state_dict(self) -> dict:
        n = self.size
        return {"obs": torch.from_numpy(self.obs[:n].copy()), "next_obs": torch.from_numpy(self.next_obs[:n].copy()),
                "actions": torch.from_numpy(self.actions[:n].copy()),
                "rewards": torch.from_numpy(self.rewards[:n].copy()),
                "terminated": torch.from_numpy(self.terminated[:n].copy()),
                "discounts": torch.from_numpy(self.discounts[:n].copy()), "pos": self.pos, "size": n}

    def load_state_dict(self, state: dict) -> None:
        n = int(state["size"])
        for name in ("obs", "next_obs", "actions", "rewards", "terminated", "discounts"):
            if name in state:  # checkpoints older than n-step returns have no discounts (one-step: unused)
                getattr(self, name)[:n] = state[name].numpy()
        self.pos, self.size = int(state["pos"]), n


def sample_with_reserve(buf: ReplayBuffer, reserve: ReplayBuffer | None, share: float, batch_size: int,
                        rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A batch whose first round(share * batch_size) rows come from `reserve` (the latest real terminations),
    the rest uniformly from `buf`. With no reserve, an empty one or share 0 it is buf.sample(batch_size, rng).

    Once a CartPole agent balances, falls become ~0.1% of the replay and a uniform batch of 128 rarely holds
    one: nothing in the targets says what falling costs. The reserve keeps that signal in every batch."""
    k = int(round(share * batch_size)) if reserve is not None and len(reserve) else 0
    main = buf.sample(batch_size - k, rng)
    if k == 0:
        return main
    extra = reserve.sample(k, rng)
    return {key: np.concatenate([extra[key], main[key]]) for key in main}


def nstep_transitions(queue: list, next_obs, terminated: bool, gamma: float, flush: bool) -> list[tuple]:
    """n-step transitions from the queue of the last (obs, action, reward) steps, oldest first.

    Not flushing (the episode goes on and the queue holds n steps): one transition from the oldest step,
    R = r_0 + gamma r_1 + ... + gamma^(n-1) r_(n-1), bootstrapping from next_obs with gamma^n; the oldest
    step leaves the queue. Flushing (the episode ended: terminated or truncated): one transition per queued
    step i with the rewards up to the end and discount gamma^(len - i); all of them keep `terminated`
    (a fall cuts the bootstrap for every one of them; a time limit does not). The queue is emptied.
    Returns (obs, action, R, next_obs, terminated, discount) tuples."""
    out = []
    starts = range(len(queue)) if flush else range(1)
    for i in starts:
        ret, g = 0.0, 1.0
        for _, _, r in queue[i:]:
            ret += g * r
            g *= gamma
        out.append((queue[i][0], queue[i][1], ret, next_obs, terminated, g))
    if flush:
        queue.clear()
    else:
        queue.pop(0)
    return out
