"""Bench p02: one optimizer step of our hand-written numpy Adam / momentum vs torch.optim on the same parameters.

Parameters shaped like an MLP 784-256-256-10 (269,322 float32 values), fixed random gradients. Ours and the
peer run interleaved in rounds; we report the median ms per step. Both on one CPU thread (numpy's elementwise
ops are single-threaded; torch is pinned to 1 thread for a fair comparison). Prints one JSON object and writes
bench/results/p02_optimizers.json. Lower ms is better; ratio = ours / torch.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from dlm_core.benchmark import machine, unshadow, write_result

unshadow(__file__, "p02_optimizers")
from p02_optimizers.optim import make_optimizer  # noqa: E402

SHAPES = [(256, 784), (256,), (256, 256), (256,), (10, 256), (10,)]
ROUNDS, STEPS = 9, 20
TORCH = {"adam": (torch.optim.Adam, {}), "momentum": (torch.optim.SGD, {"momentum": 0.9})}


def bench(name: str) -> dict:
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    ours_p = [p.copy() for p in params]
    ours = make_optimizer(name, ours_p, 1e-3)
    tp = [torch.tensor(p, requires_grad=True) for p in params]
    for p, g in zip(tp, grads):
        p.grad = torch.from_numpy(g)
    cls, kw = TORCH[name]
    peer = cls(tp, lr=1e-3, **kw)
    t_ours, t_peer = [], []
    for _ in range(ROUNDS):  # interleaved: contention hits both alike
        t0 = time.perf_counter()
        for _ in range(STEPS):
            ours.step(grads)
        t_ours.append((time.perf_counter() - t0) / STEPS * 1e3)
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(STEPS):
                peer.step()
        t_peer.append((time.perf_counter() - t0) / STEPS * 1e3)
    diff = max(float(np.abs(a - b.detach().numpy()).max()) for a, b in zip(ours_p, tp))
    return {"ours_ms_per_step": statistics.median(t_ours), "peer_ms_per_step": statistics.median(t_peer),
            "max_abs_param_diff_after_all_steps": diff, "steps_each": ROUNDS * STEPS}


def main() -> dict:
    torch.set_num_threads(1)
    adam, mom = bench("adam"), bench("momentum")
    result = {
        "bench": "one optimizer step, 269k float32 params (MLP 784-256-256-10 shapes): hand-written numpy "
                 "Adam vs torch.optim.Adam (CPU, 1 thread)",
        "machine": {**machine(), "numpy": np.__version__},
        "ours": {"adam_ms_per_step": round(adam["ours_ms_per_step"], 3),
                 "momentum_ms_per_step": round(mom["ours_ms_per_step"], 3)},
        "peer": {"adam_ms_per_step": round(adam["peer_ms_per_step"], 3),
                 "momentum_ms_per_step": round(mom["peer_ms_per_step"], 3)},
        "ratio": round(adam["ours_ms_per_step"] / adam["peer_ms_per_step"], 3),
        "goal": "ratio = ours / torch for Adam ms per step: lower is better; the numpy version is for reading, "
                "the goal is only to stay within ~3x of torch.optim",
        "momentum_ratio": round(mom["ours_ms_per_step"] / mom["peer_ms_per_step"], 3),
        "max_abs_param_diff": {"adam": adam["max_abs_param_diff_after_all_steps"],
                               "momentum": mom["max_abs_param_diff_after_all_steps"]},
        "steps_each": adam["steps_each"],
    }
    write_result("p02_optimizers", result)
    return result


if __name__ == "__main__":
    main()
