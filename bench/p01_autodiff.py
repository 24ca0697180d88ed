"""p01 bench: one training step (forward, backward, SGD-momentum update) of a 784-256-256-10 MLP at batch 128,
float32 on CPU: p01_autodiff's numpy engine vs PyTorch autograd, same thread count, interleaved, medians.

Prints one JSON object and writes bench/results/p01_autodiff.json. ratio = ours / torch (lower is better).
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from dlm_core.benchmark import machine, unshadow, write_result

SIZES, BATCH, ROUNDS, STEPS = [784, 256, 256, 10], 128, 30, 10



def main() -> dict:
    unshadow(__file__, "p01_autodiff")
    from p01_autodiff import functional as F
    from p01_autodiff.nn import MLP
    from p01_autodiff.optim import SGD, Adam
    from p01_autodiff.tensor import Tensor

    threads = int(os.environ.get("DLM_THREADS", 0)) or os.cpu_count() or 1
    torch.set_num_threads(threads)
    limiter = threadpool_limits(limits=threads)  # numpy's BLAS gets the same number of threads as torch
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)

    ours = MLP(SIZES, seed=0, dtype=np.float32)
    ref = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 10))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def make_steps(opt_name: str):
        opt = SGD(ours.parameters(), lr=0.01, momentum=0.9) if opt_name == "sgd" else Adam(ours.parameters(), lr=1e-3)
        topt = (torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9) if opt_name == "sgd"
                else torch.optim.Adam(ref.parameters(), lr=1e-3))

        def ours_step():
            opt.zero_grad()
            loss = F.cross_entropy(ours(Tensor(x)), y)
            loss.backward()
            opt.step()

        def torch_step():
            topt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(ref(xt), yt)
            loss.backward()
            topt.step()

        return ours_step, torch_step

    def timed(fn) -> float:
        t0 = time.perf_counter()
        for _ in range(STEPS):
            fn()
        return (time.perf_counter() - t0) / STEPS * 1e3

    results = {}
    for opt_name in ("sgd", "adam"):
        ours_step, torch_step = make_steps(opt_name)
        for _ in range(3):  # warm-up
            ours_step()
            torch_step()
        a, b = [], []
        for _ in range(ROUNDS if opt_name == "sgd" else ROUNDS // 2):  # interleaved rounds
            a.append(timed(ours_step))
            b.append(timed(torch_step))
        results[opt_name] = (statistics.median(a), statistics.median(b))

    (ours_ms, torch_ms), (ours_adam, torch_adam) = results["sgd"], results["adam"]
    blas = [f"{i.get('internal_api')} {i.get('version')} threads={i.get('num_threads')}" for i in threadpool_info()
            if i.get("user_api") == "blas"]
    limiter.restore_original_limits()
    out = {
        "bench": "p01_autodiff: one training step (fwd+bwd+SGD momentum) of MLP 784-256-256-10, batch 128, float32",
        "machine": machine(),
        "ours": {"ms_per_step": round(ours_ms, 3), "engine": f"p01_autodiff (numpy {np.__version__})",
                 "adam_ms_per_step": round(ours_adam, 3)},
        "peer": {"ms_per_step": round(torch_ms, 3), "engine": f"torch {torch.__version__} autograd",
                 "adam_ms_per_step": round(torch_adam, 3)},
        "ratio": round(ours_ms / torch_ms, 3),
        "adam_ratio": round(ours_adam / torch_adam, 3),
        "goal": "ratio = ours / torch <= 3 (lower is better)",
        "threads": threads,
        "numpy_blas": blas,
        "method": f"median over {ROUNDS} interleaved rounds of {STEPS} steps each (Adam: {ROUNDS // 2} rounds)",
    }
    write_result("p01_autodiff", out)
    return out


if __name__ == "__main__":
    main()
