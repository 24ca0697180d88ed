"""Console scripts: run_dqn_train (train, validate, test once) and run_dqn_eval (greedy episodes, GIF).

torch and gymnasium are imported inside main(), so `--help` is instant.
"""

from __future__ import annotations

import dataclasses
import sys

from dlm_core.config import ArgumentParser, add_config_args, config_from_args, resume_config
from dlm_core.errors import DlmError, cli_entry
from dlm_core.runs import RunDir

from .config import PRESETS, DQNConfig, preset_for


def train_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_dqn_train", description="Train a DQN on a gymnasium control task "
                       "(CartPole-v1 by default); greedy test episodes on separate seeds at the end.")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="starting config (default: the preset of --env; cleanrl = CleanRL's dqn.py CartPole "
                        "hyperparameters; quick = seconds, for the demo)")
    add_config_args(p, DQNConfig)
    p.add_argument("--run-dir", default=None, help="run folder (default: runs/p09_dqn/<timestamp>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its latest checkpoint (its config.json is used)")
    return p


@cli_entry
def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    if args.resume:
        if args.preset is not None:
            raise DlmError("--resume continues a run with its own saved config; drop --preset")
        run = RunDir.open(args.resume)
        names = {f.name for f in dataclasses.fields(DQNConfig)}
        saved = {k: v for k, v in run.load_config().items() if k in names}
        cfg = resume_config(DQNConfig, saved, args, run.path)  # the saved config, budget flags only
        run_dir = args.resume
    else:
        cfg = config_from_args(DQNConfig, args, base=preset_for(args.preset, getattr(args, "env", None)))
        run_dir = args.run_dir
    from .train import train

    train(cfg, run_dir=run_dir, resume=bool(args.resume))
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
