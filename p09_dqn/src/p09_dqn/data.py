"""The "data" of RL: the gymnasium environments, their seeds, and the replay buffer that stores what they said.

Seeds never overlap: the training env uses `seed`, validation episodes (model selection, early stop) use
VAL_BASE + ..., the final test episodes TEST_BASE + ... . The test seeds are touched once, at the end.
"""

from __future__ import annotations

import numpy as np

from dlm_core.errors import DlmError

VAL_BASE = 1_000_000
TEST_BASE = 2_000_000


def val_seeds(seed: int, n: int) -> list[int]:
    return [VAL_BASE + 1_000 * seed + i for i in range(n)]


def test_seeds(seed: int, n: int) -> list[int]:
    return [TEST_BASE + 1_000 * seed + i for i in range(n)]


def make_env(env_id: str, render_mode: str | None = None, max_episode_steps: int | None = None):
    """gym.make with a clear DlmError for unknown ids and unsupported spaces (Box obs, Discrete actions)."""
    import gymnasium as gym

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
    the target still bootstraps from next_obs), so only `terminated` is stored for the target.
    """

    def __init__(self, capacity: int, obs_dim: int):
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos = 0  # next slot to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action: int, reward: float, next_obs, terminated: bool) -> None:
        i = self.pos
        self.obs[i] = obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = float(terminated)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self.size == 0:
            raise ValueError("sample() from an empty replay buffer")
        idx = rng.integers(0, self.size, size=batch_size)
        return {"obs": self.obs[idx], "actions": self.actions[idx], "rewards": self.rewards[idx],
                "next_obs": self.next_obs[idx], "terminated": self.terminated[idx]}

    # checkpoints hold tensors and plain values only (torch.load weights_only=True)
    def state_dict(self) -> dict:
        import torch

        n = self.size
        return {"obs": torch.from_numpy(self.obs[:n].copy()), "next_obs": torch.from_numpy(self.next_obs[:n].copy()),
                "actions": torch.from_numpy(self.actions[:n].copy()),
                "rewards": torch.from_numpy(self.rewards[:n].copy()),
                "terminated": torch.from_numpy(self.terminated[:n].copy()), "pos": self.pos, "size": n}

    def load_state_dict(self, state: dict) -> None:
        n = int(state["size"])
        for name in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, name)[:n] = state[name].numpy()
        self.pos, self.size = int(state["pos"]), n
