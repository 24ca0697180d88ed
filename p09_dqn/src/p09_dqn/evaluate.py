"""Greedy and random-policy rollouts on fixed seeds, the training plots, the report and the GIF."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

from dlm_core.checkpoint import Checkpointer, load_checkpoint
from dlm_core.errors import DlmError
from dlm_core.plotting import plt, save_figure
from dlm_core.runs import RunDir

from .data import env_dims, make_env
from .model import QNetwork, greedy_actions


def rollout(env_id: str, seeds: list[int], policy=None, device="cpu", rng_seed: int = 0,
            max_episode_steps: int | None = None) -> np.ndarray:
    """Run one episode per seed, all envs stepped together; returns the undiscounted return of each.

    policy: a QNetwork (greedy argmax, batched over the live envs) or None for the uniform random policy.
    """
    envs = [make_env(env_id, max_episode_steps=max_episode_steps) for _ in seeds]
    obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]).astype(np.float32)
    returns = np.zeros(len(envs))
    alive = np.ones(len(envs), dtype=bool)
    rng = np.random.default_rng(rng_seed)
    n_actions = int(envs[0].action_space.n)
    while alive.any():
        idx = np.flatnonzero(alive)
        if policy is None:
            actions = rng.integers(0, n_actions, size=len(idx))
        else:
            actions = greedy_actions(policy, obs[idx], device).numpy()
        for i, a in zip(idx, actions):
            o, r, terminated, truncated, _ = envs[i].step(int(a))
            obs[i] = o
            returns[i] += r
            if terminated or truncated:
                alive[i] = False
    for env in envs:
        env.close()
    return returns


def load_policy(path: str, weights: str = "best"):
    """(QNetwork, config dict) from a run folder's policy.pt, or from a policy/checkpoint .pt file.

    weights="last" reads the latest checkpoint's greedy net (its Polyak average with --eval-ema, else the online
    net) instead of the best-on-validation one."""
    p = Path(path)
    if p.is_dir():
        if weights == "last" or not (p / "policy.pt").is_file():
            RunDir.open(p)  # a clear error when it is not a run folder at all
            if Checkpointer(p / "checkpoints").latest_path() is None:
                raise DlmError(f"{p} has no policy.pt and no checkpoint; train it first (run_dqn_train)")
            state = Checkpointer(p / "checkpoints").latest()
        else:
            state = load_checkpoint(p / "policy.pt")
    else:
        state = load_checkpoint(p)
    if "config" not in state or not any(k in state for k in ("best_model", "model")):
        raise DlmError(f"{path} is not a p09_dqn policy or checkpoint (no model/config inside)")
    cfg = state["config"]
    if weights == "last":
        if "model" not in state or "best_model" not in state:
            raise DlmError(f"{path}: --weights last needs a run folder or a checkpoint, not a policy.pt")
        # the net that acted greedily in validation: the Polyak average when the run kept one (--eval-ema)
        net = state["ema"] if state.get("ema") is not None else state["model"]
    else:
        net = state.get("best_model", state["model"])
    env = make_env(cfg["env"])
    obs_dim, n_actions = env_dims(env)
    env.close()
    q = QNetwork(obs_dim, n_actions, cfg["hidden"])
    try:
        q.load_state_dict(net)
    except RuntimeError as err:
        raise DlmError(f"{path}: weights do not fit the saved config: {str(err).splitlines()[0]}") from None
    q.eval()
    return q, cfg


def q_bound(gamma: float, reward_abs_max: float) -> float:
    """|Q| can never exceed max|r| / (1 - gamma) (one reward per step, discounted forever)."""
    return math.inf if gamma >= 1 else reward_abs_max / (1.0 - gamma)


def plot_training(rows: list[dict], random_mean: float, path, title: str, window: int = 20,
                  q_limit: float | None = None) -> Path:
    """Four panels against env steps: episode return (+ rolling mean, random policy), TD loss, mean max-Q, epsilon."""
    pyplot = plt()
    fig, axes = pyplot.subplots(2, 2, figsize=(10, 6.4))
    eps = [r for r in rows if "episode_return" in r]
    steps = [r for r in rows if "td_loss" in r]
    evals = [r for r in rows if "val_return" in r]
    ax = axes[0, 0]
    if eps:
        x = np.array([r["step"] for r in eps])
        y = np.array([r["episode_return"] for r in eps])
        ax.plot(x, y, lw=0.6, alpha=0.4, label="episode return")
        k = min(window, len(y))
        roll = np.convolve(y, np.ones(k) / k, mode="valid")
        ax.plot(x[k - 1:], roll, lw=1.6, label=f"rolling mean ({k} ep.)")
    if evals:
        ax.plot([r["step"] for r in evals], [r["val_return"] for r in evals], "o-", ms=3, lw=1,
                label="greedy validation")
    ax.axhline(random_mean, color="grey", ls="--", lw=1, label=f"random policy ({random_mean:.1f})")
    ax.set_title("episode return")
    ax.legend(fontsize=7)
    for ax, key, name in ((axes[0, 1], "td_loss", "TD loss"), (axes[1, 0], "q_max", "mean max-Q (batch)"),
                          (axes[1, 1], "epsilon", "epsilon")):
        pts = [(r["step"], r[key]) for r in steps if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), lw=1)
        if key == "td_loss":
            ax.set_yscale("log")
        if key == "q_max" and q_limit is not None and math.isfinite(q_limit):
            lim = q_limit if any(v > 0 for _, v in pts) else -q_limit
            ax.axhline(lim, color="grey", ls="--", lw=1, label=f"bound max|r|/(1-gamma) = {lim:g}")
            ax.legend(fontsize=7)
        ax.set_title(name)
    for ax in axes[1]:
        ax.set_xlabel("environment step")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def q_verdict(rows: list[dict], gamma: float, reward_abs_max: float) -> tuple[bool, str]:
    """Did the Q-values stay finite and inside the bound max|r|/(1-gamma)? (True/False, one sentence)."""
    qs = [r["q_max"] for r in rows if r.get("q_max") is not None]
    if not qs:
        return True, "no gradient step was taken, so there are no Q-values to check."
    bound = q_bound(gamma, reward_abs_max)
    peak = max(abs(q) for q in qs)
    finite = all(math.isfinite(q) for q in qs)
    ok = finite and peak <= 1.05 * bound
    text = (f"the batch mean of max-Q peaked at |Q| = {peak:.2f} against the bound max|r|/(1-gamma) = {bound:.2f} "
            f"(max|r| = {reward_abs_max:g}, gamma = {gamma:g}), last value {qs[-1]:.2f}")
    return ok, ("yes: " if ok else "NO: ") + text + "."


def save_gif(env_id: str, model, seed: int, path, device="cpu", every: int = 2, width: int = 300,
             max_frames: int = 300, max_episode_steps: int | None = None) -> tuple[Path, float]:
    """Record one greedy episode (rgb_array frames, every `every`-th, resized) as a looping GIF."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # off-screen rendering: no display, no audio, no warnings
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pygame's pkg_resources deprecation notice
        import pygame  # noqa: F401  (here: it reads the SDL variables above when imported)
    env = make_env(env_id, render_mode="rgb_array", max_episode_steps=max_episode_steps)
    obs, _ = env.reset(seed=seed)
    frames, total, t, done = [], 0.0, 0, False
    while not done:
        if t % every == 0 and len(frames) < max_frames:
            frame = Image.fromarray(env.render())
            h = round(frame.height * width / frame.width)
            frames.append(np.asarray(frame.resize((width, h), Image.BILINEAR)))
        action = int(greedy_actions(model, obs[None], device)[0])
        obs, r, terminated, truncated, _ = env.step(action)
        total += r
        t += 1
        done = terminated or truncated
    env.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(frames), duration=int(1000 * every / 50), loop=0)
    return path, total


def report_text(cfg, result: dict, q_text: str) -> str:
    """report.md of a run: the test table beside the random policy, when it solved, and whether Q stayed bounded."""
    s2s = result["steps_to_solve"]
    lines = [
        f"# DQN on {cfg.env}",
        "",
        f"Seed {cfg.seed}, {result['steps']} environment steps ({result['updates']} gradient steps) in "
        f"{result['train_seconds']:.0f} s. {'Double DQN' if cfg.double else 'Vanilla DQN'}, {cfg.loss} loss, "
        f"MLP {'-'.join(map(str, cfg.hidden))}, target {'hard copy' if cfg.tau == 1 else f'Polyak tau={cfg.tau}'} "
        f"every {cfg.target_every} steps.",
        "",
        "| policy | test episodes | mean return | std |",
        "|---|---|---|---|",
        f"| DQN, greedy (model of step {result['model_step']}) | {result['test_episodes']} | "
        f"{result['test_mean']:.1f} | {result['test_std']:.1f} |",
        f"| random (baseline) | {result['test_episodes']} | {result['random_mean']:.1f} | {result['random_std']:.1f} |",
        "",
        f"Solved threshold (validation mean): {cfg.target_return:g}; first reached at step: "
        f"{s2s if s2s is not None else 'not reached'}. Test seeds are disjoint from the validation seeds "
        "that chose the model.",
        "",
        f"**Did Q stay bounded?** {q_text}",
        "",
        "![training](training.png)",
        "",
    ]
    return "\n".join(lines)
