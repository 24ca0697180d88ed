"""The DQN loop, written out by hand.

    for each env step:
        act epsilon-greedily (epsilon decays linearly), step the env, store (s, a, r, s', terminated)
        every train_freq steps: sample a batch, regress Q(s, a) on r + gamma * (1 - terminated) * V_target(s')
        every target_every steps: copy (or Polyak-average) the online net into the target net
        every eval_every steps: greedy episodes on validation seeds; keep the best net; stop once solved
        at the first episode end after each checkpoint_every steps: checkpoint everything (exact resume)

A time-limit truncation is not a terminal state: its transition is stored with terminated=0, so the target
still bootstraps from s'. Only a real termination (pole fell, goal reached) cuts the bootstrap.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from dlm_core.checkpoint import Checkpointer, rng_state, save_checkpoint, set_rng_state
from dlm_core.device import select_device
from dlm_core.errors import check_finite
from dlm_core.runs import RunDir, print_metrics, progress
from dlm_core.seed import seed_everything

from .config import DQNConfig
from .data import ReplayBuffer, env_dims, make_env, nstep_transitions, sample_with_reserve, test_seeds, val_seeds
from .evaluate import plot_training, q_bound, q_verdict, report_text, rollout
from .model import QNetwork


def linear_epsilon(step: int, cfg: DQNConfig) -> float:
    """eps_start -> eps_end linearly over exploration_fraction * total_steps, then flat."""
    duration = cfg.exploration_fraction * cfg.total_steps
    return max(cfg.eps_end, cfg.eps_start + (cfg.eps_end - cfg.eps_start) * step / duration)


def linear_lr(step: int, cfg: DQNConfig) -> float:
    """lr -> lr_end linearly over lr_decay_fraction * total_steps, then flat (or, with lr_final, linearly on to
    lr_final at total_steps); constant lr when lr_end is None."""
    if cfg.lr_end is None:
        return cfg.lr
    knee = cfg.lr_decay_fraction * cfg.total_steps
    if step <= knee or cfg.lr_final is None:
        return cfg.lr + (cfg.lr_end - cfg.lr) * min(1.0, step / knee)
    frac = min(1.0, (step - knee) / max(cfg.total_steps - knee, 1e-9))
    return cfg.lr_end + (cfg.lr_final - cfg.lr_end) * frac


def td_target(rewards: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor, gamma: float | torch.Tensor,
              target_net: torch.nn.Module, online_net: torch.nn.Module | None = None) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * V(s').

    Vanilla DQN: V(s') = max_a Q_target(s', a). Double DQN (online_net given): the online net picks
    a* = argmax_a Q_online(s', a) and the target net values it, V(s') = Q_target(s', a*), which curbs the
    overestimation that comes from maximising over noisy estimates.
    """
    with torch.no_grad():
        q_next = target_net(next_obs)
        if online_net is None:
            v_next = q_next.max(dim=1).values
        else:
            a_star = online_net(next_obs).argmax(dim=1, keepdim=True)
            v_next = q_next.gather(1, a_star).squeeze(1)
        return rewards + gamma * (1.0 - terminated) * v_next


def update_target(target_net: torch.nn.Module, online_net: torch.nn.Module, tau: float) -> None:
    """tau = 1: hard copy; tau < 1: Polyak averaging target <- tau * online + (1 - tau) * target."""
    with torch.no_grad():
        for pt, p in zip(target_net.parameters(), online_net.parameters()):
            if tau >= 1.0:
                pt.copy_(p)
            else:
                pt.mul_(1.0 - tau).add_(p, alpha=tau)


def _gen_state(gen: np.random.Generator) -> str:
    return json.dumps(gen.bit_generator.state)  # 128-bit ints: kept as JSON text in the checkpoint


def _set_gen_state(gen: np.random.Generator, text: str) -> None:
    gen.bit_generator.state = json.loads(text)


def act(q: QNetwork, obs: np.ndarray, eps: float, rng: np.random.Generator, n_actions: int, device) -> int:
    """Epsilon-greedy: a uniform random action with probability eps, else argmax_a Q(obs, a)."""
    if rng.random() < eps:
        return int(rng.integers(n_actions))
    with torch.no_grad():
        return int(q(torch.as_tensor(obs, device=device).unsqueeze(0)).argmax(1).item())


def gradient_step(q: QNetwork, target: QNetwork, opt: torch.optim.Optimizer, batch: dict[str, np.ndarray],
                  cfg: DQNConfig, reward_abs_max: float, device) -> dict[str, float]:
    """One TD regression step on a replay batch; returns its loss, batch-mean max-Q, gradient norm and |TD error|."""
    o, a, r, o2, d, disc = (torch.as_tensor(batch[k], device=device) for k in
                            ("obs", "actions", "rewards", "next_obs", "terminated", "discounts"))
    # one-step: the scalar gamma; n-step: gamma^k per transition
    y = td_target(r, o2, d, cfg.gamma if cfg.n_step == 1 else disc, target, q if cfg.double else None)
    if cfg.clip_target:  # no return can exceed this: a target above it is pure overestimation
        bound = q_bound(cfg.gamma, reward_abs_max)
        y = y.clamp(-bound, bound)
    q_all = q(o)
    q_sa = q_all.gather(1, a.unsqueeze(1)).squeeze(1)
    loss = F.smooth_l1_loss(q_sa, y) if cfg.loss == "huber" else F.mse_loss(q_sa, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    # the global gradient norm before clipping (inf turns clipping off but still measures it)
    gnorm = torch.nn.utils.clip_grad_norm_(q.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
    opt.step()
    return {"loss": loss.item(), "q_max": q_all.detach().max(1).values.mean().item(), "grad_norm": float(gnorm),
            "td_abs": (q_sa.detach() - y).abs().mean().item()}


def validate(cfg: DQNConfig, q: torch.nn.Module, device) -> float:
    """Mean return of greedy episodes on the validation seeds (model selection and early stop)."""
    return float(rollout(cfg.env, val_seeds(cfg.seed, cfg.eval_episodes), q, device,
                         max_episode_steps=cfg.max_episode_steps).mean())


def new_loop_state() -> dict:
    """Everything the loop counts; a checkpoint holds it (as JSON) beside the nets, buffers and RNG states."""
    return {"step": 0, "updates": 0, "episode": 0, "ep_return": 0.0, "ep_len": 0, "recent": [],
            "best_val": -math.inf, "best_step": 0, "steps_to_solve": None, "seconds_to_solve": None,
            "reward_abs_max": 0.0, "loss_sum": 0.0, "q_sum": 0.0, "n_sum": 0, "gn_sum": 0.0, "td_sum": 0.0,
            "last_loss": None, "last_q": None, "epoch": 0, "finished": False, "train_seconds": 0.0,
            "last_eval_step": -1}


def test_policy(cfg: DQNConfig, q: QNetwork, device) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The test: greedy episodes of q, once, on their own seeds, beside the random policy on the same seeds."""
    seeds = test_seeds(cfg.seed, cfg.test_episodes)
    test = rollout(cfg.env, seeds, q, device, max_episode_steps=cfg.max_episode_steps)
    rand = rollout(cfg.env, seeds, None, rng_seed=cfg.seed, max_episode_steps=cfg.max_episode_steps)
    return seeds, test, rand


def train(cfg: DQNConfig, run_dir=None, resume: bool = False, quiet: bool = False) -> dict:
    """Train, pick the best net on validation seeds, test it once on separate seeds; returns results.json."""
    seed_everything(cfg.seed)
    device = select_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # batches of 64 through a 128-wide MLP: threads only add overhead
    env = make_env(cfg.env, max_episode_steps=cfg.max_episode_steps)
    obs_dim, n_actions = env_dims(env)
    run = RunDir.at(run_dir, cfg) if run_dir is not None else RunDir.create("p09_dqn", cfg)
    ckpt = Checkpointer(run.checkpoint_dir)
    say = (lambda **m: None) if quiet else print_metrics

    q = QNetwork(obs_dim, n_actions, cfg.hidden).to(device)
    target = copy.deepcopy(q)
    # the net that acts greedily in validation and test: the online net, or a Polyak average of it (--eval-ema)
    ema = copy.deepcopy(q) if cfg.eval_ema > 0 else None
    greedy = ema if ema is not None else q
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
    buf = ReplayBuffer(cfg.buffer_size, obs_dim)
    # the latest real terminations, kept apart so that a share of every batch is a failure (--terminal-share)
    reserve = ReplayBuffer(cfg.terminal_buffer_size, obs_dim) if cfg.terminal_share > 0 else None
    nq: list = []  # n-step queue: the last (obs, action, reward) steps not yet stored
    rng = np.random.default_rng([cfg.seed, 7])  # exploration and replay sampling
    obs, _ = env.reset(seed=cfg.seed)
    s = new_loop_state()
    best_model = copy.deepcopy(q.state_dict())
    state = ckpt.latest() if resume else None
    if resume and state is None and not quiet:
        print(f"no checkpoint in {run.checkpoint_dir}: starting from scratch", flush=True)
    if state is not None:
        q.load_state_dict(state["model"])
        target.load_state_dict(state["target"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        buf.load_state_dict(state["buffer"])
        if reserve is not None:
            reserve.load_state_dict(state["reserve"])
        nq = [(np.asarray(o, dtype=np.float32), a, r) for o, a, r in json.loads(state.get("nstep_queue", "[]"))]
        best_model = state["best_model"]
        s = {"gn_sum": 0.0, "td_sum": 0.0, **json.loads(state["loop"])}  # older checkpoints lack these
        set_rng_state(state["rng"])
        _set_gen_state(rng, state["explore_rng"])
        _set_gen_state(env.unwrapped.np_random, state["env_rng"])
        run.truncate_metrics(lambda r: r.get("step", 0) <= s["step"])
        obs, _ = env.reset()  # checkpoints are taken at episode ends, before the next reset
        if not quiet:
            print(f"resumed from step {s['step']} (checkpoint {state['epoch']})", flush=True)

    def save(finished: bool) -> None:
        s["epoch"] += 1
        s["finished"] = finished
        ckpt.save(s["epoch"], {"model": q.state_dict(), "target": target.state_dict(),
                               "ema": ema.state_dict() if ema is not None else None, "optimizer": opt.state_dict(),
                               "buffer": buf.state_dict(), "best_model": best_model, "loop": json.dumps(s),
                               "reserve": reserve.state_dict() if reserve is not None else None,
                               # empty at episode ends, where checkpoints are taken; saved for exactness anyway
                               "nstep_queue": json.dumps([(o.tolist(), a, r) for o, a, r in nq]),
                               "rng": rng_state(), "explore_rng": _gen_state(rng),
                               "env_rng": _gen_state(env.unwrapped.np_random), "config": dataclasses.asdict(cfg)})

    def record_validation(val: float) -> None:
        """Keep the best net so far; note the step (and second) at which validation first reached the target."""
        nonlocal best_model
        s["last_eval_step"] = s["step"]
        if val > s["best_val"]:
            s["best_val"], s["best_step"] = val, s["step"]
            best_model = {k: v.detach().clone() for k, v in greedy.state_dict().items()}
        if val >= cfg.target_return and s["steps_to_solve"] is None:
            s["steps_to_solve"], s["seconds_to_solve"] = s["step"], time.perf_counter() - t_start

    t_start = time.perf_counter() - s["train_seconds"]
    t_window, step_window = time.perf_counter(), s["step"]
    bar = progress(total=cfg.total_steps, initial=s["step"], desc=f"dqn {cfg.env}")
    checkpoint_due = False
    while not s["finished"] and s["step"] < cfg.total_steps:
        # act, and store what the env said
        eps = linear_epsilon(s["step"], cfg)
        action = act(q, obs, eps, rng, n_actions, device)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        # n-step: store the oldest queued step once n are queued, every queued step at an episode end.
        # truncated is NOT stored as terminated: after a time limit the target must bootstrap
        nq.append((obs, action, float(reward)))
        if terminated or truncated or len(nq) == cfg.n_step:
            for tr in nstep_transitions(nq, next_obs, terminated, cfg.gamma, flush=terminated or truncated):
                buf.add(*tr)
                if reserve is not None and tr[4]:
                    reserve.add(*tr)
        obs = next_obs
        s["step"] += 1
        step = s["step"]
        s["ep_return"] += float(reward)
        s["ep_len"] += 1
        s["reward_abs_max"] = max(s["reward_abs_max"], abs(float(reward)))

        # learn
        if step > cfg.learning_starts:
            if step % cfg.train_freq == 0:
                lr_now = linear_lr(step, cfg)
                for group in opt.param_groups:
                    group["lr"] = lr_now
                for _ in range(cfg.gradient_steps):
                    batch = sample_with_reserve(buf, reserve, cfg.terminal_share, cfg.batch_size, rng)
                    m = gradient_step(q, target, opt, batch, cfg, s["reward_abs_max"], device)
                    s["updates"] += 1
                    check_finite(m["loss"], s["updates"], cfg.lr)
                    s["loss_sum"] += m["loss"]
                    s["q_sum"] += m["q_max"]
                    s["n_sum"] += 1
                    s["gn_sum"] += m["grad_norm"]
                    s["td_sum"] += m["td_abs"]
                if ema is not None:
                    update_target(ema, q, cfg.eval_ema)
            if step % cfg.target_every == 0:
                update_target(target, q, cfg.tau)

        # log, validate, checkpoint
        if step % cfg.log_every == 0:
            diag = {}
            if s["n_sum"]:
                s["last_loss"], s["last_q"] = s["loss_sum"] / s["n_sum"], s["q_sum"] / s["n_sum"]
                diag = {"grad_norm": s["gn_sum"] / s["n_sum"], "td_abs": s["td_sum"] / s["n_sum"]}
            # replay contents: the share of transitions that end an episode with a real termination
            term_frac = float(buf.terminated[:len(buf)].mean()) if len(buf) else None
            run.log(step=step, td_loss=s["last_loss"], q_max=s["last_q"], epsilon=eps, updates=s["updates"],
                    lr=linear_lr(step, cfg), buffer_terminal_frac=term_frac, **diag)
            s["loss_sum"], s["q_sum"], s["n_sum"], s["gn_sum"], s["td_sum"] = 0.0, 0.0, 0, 0.0, 0.0
            bar.update(step - bar.n)
            bar.set_postfix(ret=f"{np.mean(s['recent'][-20:]) if s['recent'] else 0:.1f}", eps=f"{eps:.2f}")

        stop = False
        if step % cfg.eval_every == 0:
            val = validate(cfg, greedy, device)
            record_validation(val)
            if ema is not None and cfg.val_online:
                run.log(step=step, val_return_online=validate(cfg, q, device))
            now = time.perf_counter()
            sps = (step - step_window) / max(now - t_window, 1e-9)
            t_window, step_window = now, step
            avg = float(np.mean(s["recent"][-20:])) if s["recent"] else float("nan")
            run.log(step=step, val_return=val, episode=s["episode"], average_return=avg)
            say(step=step, episode=s["episode"], average_return=avg, epsilon=eps, td_loss=s["last_loss"],
                q_max=s["last_q"], val_return=val, steps_per_s=sps)
            stop = cfg.early_stop and val >= cfg.early_stop_return
        if step % cfg.checkpoint_every == 0:
            checkpoint_due = True

        if terminated or truncated:
            s["episode"] += 1
            s["recent"] = (s["recent"] + [s["ep_return"]])[-100:]
            run.log(step=step, episode=s["episode"], episode_return=s["ep_return"], episode_length=s["ep_len"])
            s["ep_return"], s["ep_len"] = 0.0, 0
            if checkpoint_due and not stop and step < cfg.total_steps:  # the end saves anyway
                s["train_seconds"] = time.perf_counter() - t_start
                save(finished=False)
                checkpoint_due = False
            obs, _ = env.reset()
        if stop:
            if not quiet:
                print(f"validation mean {val:.1f} >= {cfg.early_stop_return:g} at step {step}: stopping",
                      flush=True)
            break
    bar.close()
    env.close()
    if not s["finished"]:
        if s["last_eval_step"] != s["step"]:
            val = validate(cfg, greedy, device)
            record_validation(val)
            run.log(step=s["step"], val_return=val, episode=s["episode"])
        s["train_seconds"] = time.perf_counter() - t_start
        save(finished=True)

    q.load_state_dict(best_model)
    seeds, test, rand = test_policy(cfg, q, device)
    save_checkpoint(run.file("policy.pt"), {"model": q.state_dict(), "obs_dim": obs_dim, "n_actions": n_actions,
                                            "config": dataclasses.asdict(cfg), "step": s["best_step"]})
    rows = run.metrics()
    q_ok, q_text = q_verdict(rows, cfg.gamma, s["reward_abs_max"])
    result = {"env": cfg.env, "seed": cfg.seed, "steps": s["step"], "updates": s["updates"],
              "episodes": s["episode"], "train_seconds": s["train_seconds"],
              "steps_to_solve": s["steps_to_solve"], "seconds_to_solve": s["seconds_to_solve"],
              "solve_return": cfg.target_return,
              "best_val_return": s["best_val"], "model_step": s["best_step"], "test_episodes": len(seeds),
              "test_mean": float(test.mean()), "test_std": float(test.std()), "random_mean": float(rand.mean()),
              "random_std": float(rand.std()), "reward_abs_max": s["reward_abs_max"],
              "solved_on_test": bool(test.mean() >= cfg.target_return), "q_bounded": q_ok}
    plot_training(rows, result["random_mean"], run.file("training.png"), f"DQN on {cfg.env}, seed {cfg.seed}",
                  q_limit=q_bound(cfg.gamma, s["reward_abs_max"]))
    run.write_report(report_text(cfg, result, q_text))
    run.write_json("results.json", result)
    if not quiet:
        print(f"eval ({len(seeds)} greedy episodes): mean {test.mean():.1f} +- {test.std():.1f}   "
              f"random policy: {rand.mean():.1f}", flush=True)
        print(f"Q bounded: {result['q_bounded']}; run: {run.path}", flush=True)
    return {**result, "run_dir": str(run.path)}
