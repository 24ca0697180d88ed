import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent


def _worker():
    spec = importlib.util.spec_from_file_location("ddp_worker", HERE / "ddp_worker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ddp_two_cpu_processes_match_single_process_gradients(tmp_path):
    out = tmp_path / "grads.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(HERE / "ddp_worker.py"), str(out)], capture_output=True, text=True, env=env,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp_grads = torch.load(out, weights_only=True)

    w = _worker()
    model = w.make_model()
    x, y = w.global_batch()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(ddp_grads[name], p.grad, atol=1e-6), name


def test_single_process_context_is_a_no_op():
    from dlm_core.distributed import init_distributed

    ctx = init_distributed(torch.device("cpu"))
    model = torch.nn.Linear(2, 2)
    assert not ctx.enabled and ctx.is_main and ctx.wrap(model) is model and ctx.sampler([1, 2]) is None
    assert ctx.all_reduce_mean(3.0) == 3.0
