"""Console scripts: run_dqn_train (train, validate, test once) and run_dqn_eval (greedy episodes, GIF).

torch and gymnasium are imported inside main(), so `--help` is instant.
"""

from __future__ import annotations

import sys

from dlm_core.config import ArgumentParser, add_config_args, add_run_args, run_config
from dlm_core.errors import DlmError, cli_entry

from .config import PRESETS, DQNConfig, preset_for


def train_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_dqn_train", description="Train a DQN on a gymnasium control task "
                       "(CartPole-v1 by default); greedy test episodes on separate seeds at the end.")
    add_run_args(p, PRESETS, "p09_dqn", "starting config (default: the preset of --env; cleanrl = CleanRL's "
                                        "dqn.py CartPole hyperparameters; quick = seconds, for the demo)")
    add_config_args(p, DQNConfig)
    return p


@cli_entry
def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    # a fresh run starts from the preset of --env (or --preset); a resumed one from its saved config
    base = None if args.resume else preset_for(args.preset, getattr(args, "env", None))
    cfg, run_dir, resume = run_config(DQNConfig, args, PRESETS, base=base)
    from .train import train

    train(cfg, run_dir=run_dir, resume=resume)
    return 0


def eval_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_dqn_eval", description="Greedy episodes of a trained DQN on fresh seeds, beside "
                       "the random policy; optionally a GIF of one episode.")
    p.add_argument("path", help="a run folder (runs/p09_dqn/<run>) or a policy.pt / checkpoint file")
    p.add_argument("--episodes", type=int, default=100, help="greedy episodes (default: 100)")
    p.add_argument("--seed", type=int, default=None, help="first episode seed (default: the run's test seeds)")
    p.add_argument("--gif", default=None, metavar="OUT.gif", help="record the first episode as a GIF")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | mps (default: cpu)")
    p.add_argument("--weights", choices=("best", "last"), default="best",
                   help="best = the net chosen on validation (policy.pt); last = the net as training left it "
                        "(the latest checkpoint), to judge a fixed-budget run without model selection")
    return p


@cli_entry
def evaluate_main(argv: list[str] | None = None) -> int:
    args = eval_parser().parse_args(argv)
    if args.episodes < 1:
        raise DlmError("--episodes must be >= 1")
    if args.gif and not args.gif.lower().endswith(".gif"):
        raise DlmError(f"--gif {args.gif!r}: give a file name ending in .gif")
    from dlm_core.device import select_device

    from .data import test_seeds
    from .evaluate import load_policy, rollout, save_gif

    device = select_device(args.device)
    q, cfg = load_policy(args.path, args.weights)
    q.to(device)
    seeds = (test_seeds(cfg["seed"], args.episodes) if args.seed is None
             else list(range(args.seed, args.seed + args.episodes)))
    limit = cfg.get("max_episode_steps")
    returns = rollout(cfg["env"], seeds, q, device, max_episode_steps=limit)
    rand = rollout(cfg["env"], seeds, None, rng_seed=cfg["seed"], max_episode_steps=limit)
    which = " (last weights)" if args.weights == "last" else ""
    print(f"eval ({len(seeds)} greedy episodes of {cfg['env']}{which}): mean {returns.mean():.1f} "
          f"+- {returns.std():.1f} (min {returns.min():.1f})   random policy: {rand.mean():.1f}", flush=True)
    if args.gif:
        path, total = save_gif(cfg["env"], q, seeds[0], args.gif, device, max_episode_steps=limit)
        print(f"gif: {path} (episode seed {seeds[0]}, return {total:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
