"""p09 bench: environment steps (and wall time) until a greedy DQN reaches a mean return >= 475 on CartPole-v1,
our default config vs the `cleanrl` preset (CleanRL's dqn.py CartPole hyperparameters run through the same
trainer), seeds interleaved (ours s1, cleanrl s1, ours s2, ...), medians.

steps-to-475 (and the wall seconds to get there): the first validation evaluation (every 5,000 steps,
100 greedy episodes on validation seeds) whose mean return is >= 475. Training stops at each preset's
stop_return (ours: a perfect 500 on validation, to keep a margin for the test; cleanrl: 475). Each final
model is then tested once on 100 other seeds:
`seeds_solved` counts our seeds whose test mean is >= 475. ratio = our median steps-to-475 / the preset's
(lower is better). A seed that never reaches 475 counts as its step cap in the median (reported as such).

    .venv/bin/python bench/p09_dqn.py [--seeds 1,2,3]

Stability (issue #23, the "stability" key): each config trained for 100k steps with no early stop,
validation (20 greedy episodes) every 5k steps; per seed the last weights (as training left them, no model
selection; with --eval-ema the Polyak average) are tested on the 100 test episodes, and "post_solve_frac" is
the share of the validation evals after the first one >= 475 that are still >= 475. Configs: "ours" (the default),
"previous_default" (the default before issue #23: one-step returns, uniform replay) and "cleanrl" (the cleanrl
preset capped at 100k steps: its epsilon then decays over 50k steps instead of 250k).

    .venv/bin/python bench/p09_dqn.py --stability-seeds 1,2,3,4,5          # trains 3 x 5 runs (about 2 h here)
    .venv/bin/python bench/p09_dqn.py --skip-steps --stability-runs DIR \
        --stability-label ours=PREFIX --stability-label previous_default=PREFIX ...
        # reads DIR/PREFIX-s<seed> run folders made with the same command instead of training; --skip-steps
        # keeps the steps-to-475 section of the existing JSON instead of re-running it
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dlm_core.benchmark import machine, unshadow, write_result


def summarize(runs: list[dict], cap: int) -> dict:
    steps = [r["steps_to_solve"] if r["steps_to_solve"] is not None else cap for r in runs]
    return {
        "median_steps_to_475": statistics.median(steps),
        "steps_to_475": [r["steps_to_solve"] for r in runs],
        "median_seconds_to_475": round(statistics.median(
            r["seconds_to_solve"] if r["seconds_to_solve"] is not None else r["train_seconds"] for r in runs), 1),
        "seconds_to_475": [r["seconds_to_solve"] and round(r["seconds_to_solve"], 1) for r in runs],
        "train_wall_s": [round(r["train_seconds"], 1) for r in runs],
        "steps_trained": [r["steps"] for r in runs],
        "test_mean_return": [round(r["test_mean"], 1) for r in runs],
        "seeds_solved": sum(r["test_mean"] >= 475 for r in runs),
        "seeds_reached_475_on_validation": sum(r["steps_to_solve"] is not None for r in runs),
        "q_bounded": [r["q_bounded"] for r in runs],
        "step_cap": cap,
    }


STABILITY = {"total_steps": 100_000, "early_stop": False, "eval_every": 5_000, "eval_episodes": 20}


def stability_summary(run_dir: Path, solve: float = 475.0) -> dict:
    """One no-early-stop run: its validation curve, post-solve share >= 475, and the last weights' test mean."""
    import json

    import numpy as np

    from p09_dqn.data import test_seeds
    from p09_dqn.evaluate import load_policy, rollout

    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    val = [(r["step"], r["val_return"]) for r in rows if "val_return" in r]
    first = next((i for i, (_, v) in enumerate(val) if v >= solve), None)
    after = [v for _, v in val[first + 1:]] if first is not None else []
    q, cfg = load_policy(str(run_dir), "last")
    test = rollout(cfg["env"], test_seeds(cfg["seed"], 100), q, max_episode_steps=cfg.get("max_episode_steps"))
    q_rows = [r["q_max"] for r in rows if r.get("q_max") is not None]
    extra = {}
    online = [(r["step"], r["val_return_online"]) for r in rows if "val_return_online" in r]
    if online:  # an --eval-ema --val-online run: the online net beside its Polyak average (diagnostics)
        from dlm_core.checkpoint import Checkpointer

        q.load_state_dict(Checkpointer(run_dir / "checkpoints").latest()["model"])
        test_online = rollout(cfg["env"], test_seeds(cfg["seed"], 100), q,
                              max_episode_steps=cfg.get("max_episode_steps"))
        extra = {"last_weights_online_test_mean": round(float(np.mean(test_online)), 1),
                 "validation_curve_online": [(st, round(v, 1)) for st, v in online]}
    return {"seed": cfg["seed"], "steps": val[-1][0] if val else None,
            "last_weights_test_mean": round(float(np.mean(test)), 1),
            "first_solve_step": val[first][0] if first is not None else None,
            "post_solve_ok": sum(v >= solve for v in after), "post_solve_n": len(after),
            "post_solve_frac": round(sum(v >= solve for v in after) / len(after), 3) if after else None,
            "last_val": round(val[-1][1], 1) if val else None,
            "peak_q_max": round(max(q_rows), 1) if q_rows else None,
            "validation_curve": [(st, round(v, 1)) for st, v in val], **extra}


def stability_group(runs: list[dict]) -> dict:
    ok, n = sum(r["post_solve_ok"] for r in runs), sum(r["post_solve_n"] for r in runs)
    return {"seeds": [r["seed"] for r in runs], "last_weights_test_mean": [r["last_weights_test_mean"] for r in runs],
            "seeds_last_weights_ge_475": sum(r["last_weights_test_mean"] >= 475 for r in runs),
            "post_solve_frac": [r["post_solve_frac"] for r in runs],
            "post_solve_pooled": f"{ok}/{n}", "post_solve_pooled_frac": round(ok / n, 3) if n else None,
            "runs": runs}


def stability_configs() -> dict:
    from p09_dqn.config import CLEANRL, ENV_PRESETS, DQNConfig

    return {"ours": dataclasses.replace(ENV_PRESETS["CartPole-v1"], **STABILITY),
            # the CartPole preset before issue #23: the dataclass defaults (one-step, uniform replay, constant lr)
            "previous_default": dataclasses.replace(DQNConfig(stop_return=500.0), **STABILITY),
            "cleanrl": dataclasses.replace(CLEANRL, **STABILITY)}


def stability(args) -> dict:
    from p09_dqn.train import train

    configs = stability_configs()
    out = {"protocol": "100k env steps, no early stop, validation every 5k steps (20 greedy episodes); last weights "
                       "tested on 100 held-out episodes; post_solve = validation evals after the first >= 475 that "
                       "stay >= 475",
           "configs": {k: {f: v for f, v in dataclasses.asdict(c).items() if f != "seed"} for k, c in configs.items()}}
    if args.stability_runs:
        labels = dict(x.split("=", 1) for x in args.stability_label)
        for name, prefix in labels.items():
            dirs = [d for d in Path(args.stability_runs).glob(f"{prefix}-s*")  # finished runs only
                    if re.fullmatch(rf"{re.escape(prefix)}-s\d+", d.name) and (d / "results.json").is_file()]
            dirs.sort(key=lambda d: int(d.name.rsplit("-s", 1)[1]))
            out[name] = {"run_prefix": prefix, **stability_group([stability_summary(d) for d in dirs])}
        out["note"] = (f"read from the run folders in {args.stability_runs}, made this session with run_dqn_train "
                       "--no-early-stop --total-steps 100000 --eval-every 5000 --eval-episodes 20 (+ the config's "
                       "flags); not re-trained by this script" + (f". {args.note}" if args.note else ""))
        return out
    seeds = [int(s) for s in args.stability_seeds.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DLM_RUNS"] = tmp
        runs = {k: [] for k in configs}
        for seed in seeds:
            for name, cfg in configs.items():
                d = Path(tmp) / f"{name}-s{seed}"
                train(dataclasses.replace(cfg, seed=seed), run_dir=d, quiet=True)
                runs[name].append(stability_summary(d))
                r = runs[name][-1]
                print(f"stability {name} seed {seed}: last-weights test {r['last_weights_test_mean']} post-solve "
                      f"{r['post_solve_ok']}/{r['post_solve_n']}", file=sys.stderr, flush=True)
        for name in configs:
            out[name] = stability_group(runs[name])
    return out


def main() -> dict:
    unshadow(__file__, "p09_dqn")
    from p09_dqn.config import CLEANRL, ENV_PRESETS
    from p09_dqn.train import train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--skip-steps", action="store_true",
                    help="keep the steps-to-475 section of the existing bench/results/p09_dqn.json (not re-run)")
    ap.add_argument("--no-stability", action="store_true", help="skip the stability section (issue #23)")
    ap.add_argument("--stability-seeds", default="1,2,3")
    ap.add_argument("--stability-runs", default=None, metavar="DIR",
                    help="read the stability runs from DIR/<prefix>-s<seed> instead of training them")
    ap.add_argument("--stability-label", action="append", default=[], metavar="NAME=PREFIX",
                    help="with --stability-runs: the run-folder prefix of each config (ours, previous_default, ...)")
    ap.add_argument("--note", default="", help="with --stability-runs: added to the stability note")
    args = ap.parse_args()
    if args.skip_steps:
        import json

        from dlm_core.benchmark import results_dir

        old = json.loads((results_dir() / "p09_dqn.json").read_text())
        steps_machine = old.get("machine")  # an older JSON has it as one line of text
        if isinstance(steps_machine, dict):
            steps_machine = steps_machine.get("steps_section", steps_machine)
        old["machine"] = {**machine(), "steps_section": steps_machine,
                          "note": "this machine read the stability runs and ran their last-weights tests; "
                                  "steps_section is where the steps-to-475 section was measured"}
        old["steps_note"] = ("the steps-to-475 section (ours, peer, ratio, config_ours...) is kept from the previous "
                             "bench run, with the config of that time (config_ours), not re-run")
        if not args.no_stability:
            old["stability"] = stability(args)
        write_result("p09_dqn", old)
        return old
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    ours_cfg, peer_cfg = ENV_PRESETS["CartPole-v1"], CLEANRL  # exactly the presets: caps are their total_steps
    ours, peer = [], []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DLM_RUNS"] = tmp
        for seed in seeds:
            for name, cfg, out in (("ours", ours_cfg, ours), ("cleanrl", peer_cfg, peer)):
                r = train(dataclasses.replace(cfg, seed=seed), run_dir=Path(tmp) / f"{name}-{seed}", quiet=True)
                out.append(r)
                print(f"{name} seed {seed}: steps_to_475={r['steps_to_solve']} "
                      f"seconds_to_475={r['seconds_to_solve']} wall={r['train_seconds']:.0f}s "
                      f"test_mean={r['test_mean']:.1f} q_bounded={r['q_bounded']}", file=sys.stderr, flush=True)
    o, p = summarize(ours, ours_cfg.total_steps), summarize(peer, peer_cfg.total_steps)
    result = {
        "bench": "p09_dqn: CartPole-v1 environment steps to a greedy mean return >= 475 (100 validation episodes), "
                 "our default config vs the cleanrl preset (CleanRL dqn.py hyperparameters) in the same trainer",
        "machine": {**machine(), "note": "shared with other jobs (wall times inflated), 1 torch thread"},
        "seeds": seeds,
        "ours": o,
        "peer": p,
        "ratio": round(o["median_steps_to_475"] / p["median_steps_to_475"], 3),
        "wall_ratio": round(o["median_seconds_to_475"] / p["median_seconds_to_475"], 3),
        "seeds_solved": o["seeds_solved"],
        "goal": "ratio < 1 (fewer env steps than the cleanrl preset; lower is better) and seeds_solved == 3 "
                "(test mean >= 475 over 100 greedy episodes on held-out seeds)",
        "config_ours": {k: v for k, v in dataclasses.asdict(ours_cfg).items() if k != "seed"},
        "config_peer": {k: v for k, v in dataclasses.asdict(peer_cfg).items() if k != "seed"},
        "bench_seconds": round(time.perf_counter() - t0, 1),
    }
    if not args.no_stability:
        result["stability"] = stability(args)
    write_result("p09_dqn", result)
    return result


if __name__ == "__main__":
    main()
