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
"""

from __future__ import annotations

import argparse
import dataclasses
import os
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


def main() -> dict:
    unshadow(__file__, "p09_dqn")
    from p09_dqn.config import CLEANRL, ENV_PRESETS
    from p09_dqn.train import train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3")
    args = ap.parse_args()
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
    write_result("p09_dqn", result)
    return result


if __name__ == "__main__":
    main()
