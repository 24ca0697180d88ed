"""Greedy and random-policy rollouts on fixed seeds, the training plots, the report and the GIF."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .data import make_env


def rollout(env_id: str, seeds: list[int], policy=None, device="cpu", rng_seed: int = 0,
            max_episode_steps: int | None = None) -> np.ndarray:
    """Run one episode per seed, all envs stepped together; returns the undiscounted return of each.

    policy: a QNetwork (greedy argmax, batched over the live envs) or None for the uniform random policy.
    """
    from .model import greedy_actions

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


def q_bound(gamma: float, reward_abs_max: float) -> float:
    """|Q| can never exceed max|r| / (1 - gamma) (one reward per step, discounted forever)."""
    return math.inf if gamma >= 1 else reward_abs_max / (1.0 - gamma)


def plot_training(rows: list[dict], random_mean: float, path, title: str, window: int = 20,
                  q_limit: float | None = None) -> Path:
    """Four panels against env steps: episode return (+ rolling mean, random policy), TD loss, mean max-Q, epsilon."""
    from dlm_core.plotting import plt, save_figure

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
    import os
    import warnings

    import imageio.v3 as iio
    from PIL import Image

    from .model import greedy_actions

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # off-screen rendering: no display, no audio, no warnings
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pygame's pkg_resources deprecation notice
        import pygame  # noqa: F401
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


def write_report(run, cfg, result: dict, rows: list[dict]) -> None:
    ok, verdict = q_verdict(rows, cfg.gamma, result["reward_abs_max"])
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
        f"**Did Q stay bounded?** {verdict}",
        "",
        "![training](training.png)",
        "",
    ]
    run.write_report("\n".join(lines))
    result["q_bounded"] = ok
