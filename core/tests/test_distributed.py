import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlm_core.distributed import launch_local, local_ranks
from dlm_core.errors import DlmError

HERE = Path(__file__).parent


def _worker():
    spec = importlib.util.spec_from_file_location("ddp_worker", HERE / "ddp_worker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("launcher", ["torchrun", "launch_local"])
def test_ddp_two_cpu_processes_match_single_process_gradients(tmp_path, launcher, monkeypatch):
    out = tmp_path / "grads.pt"
    if launcher == "torchrun":
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               str(HERE / "ddp_worker.py"), str(out)], capture_output=True, text=True, env=env,
                              timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
    else:
        assert launch_local([sys.executable, str(HERE / "ddp_worker.py"), str(out)], 2) == 0
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


def test_a_failing_rank_stops_the_others_and_gives_its_exit_code(tmp_path, capfd):
    """Rank 1 fails at once; rank 0 would sleep for a minute (as a rank waiting in a collective would)."""
    script = ("import os, sys, time; r = int(os.environ['RANK']); print('rank', r, 'fails', file=sys.stderr); "
              "time.sleep(60) if r == 0 else sys.exit(3)")
    t0 = time.perf_counter()
    assert launch_local([sys.executable, "-c", script], 2) == 3
    assert time.perf_counter() - t0 < 20
    assert capfd.readouterr().err.splitlines() == ["rank 0 fails", "rank 1 fails"]  # rank 1's shown: it failed
    marker = tmp_path / "env"
    script = (f"import os; open(r'{marker}' + os.environ['RANK'], 'w').write(' '.join(os.environ[k] for k in "
              "('WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR')))")
    assert launch_local([sys.executable, "-c", script], 2) == 0
    assert [(tmp_path / f"env{r}").read_text() for r in (0, 1)] == ["2 0 2 127.0.0.1", "2 1 2 127.0.0.1"]


def test_local_ranks_one_per_core_while_each_keeps_enough_of_the_batch(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert local_ranks(0, 128, "cpu") == 2  # the p03 default on this machine: 2 x 64
    assert local_ranks(0, 64, "cpu") == 1  # a smaller batch stays in one process
    assert local_ranks(0, 128, "cuda") == 1
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert local_ranks(0, 128, "cpu") == 2 and local_ranks(0, 384, "cpu") == 6 and local_ranks(0, 320, "cpu") == 5
    assert local_ranks(3, 129, "cpu") == 3  # asked for: taken when it splits the batch
    with pytest.raises(DlmError, match="does not split"):
        local_ranks(2, 127, "cpu")
    with pytest.raises(DlmError, match="--procs"):
        local_ranks(-1, 128, "cpu")


def test_ranks_die_with_a_killed_launcher(tmp_path):
    """SIGKILL gives the launcher no chance to clean up: the ranks' parent-death signal must end them."""
    rank = f"import os, time; open(r'{tmp_path}/pid' + os.environ['RANK'], 'w').write(str(os.getpid())); time.sleep(60)"
    launcher = ("import sys; from dlm_core.distributed import launch_local; "
                f"sys.exit(launch_local([sys.executable, '-c', {rank!r}], 2))")
    proc = subprocess.Popen([sys.executable, "-c", launcher])
    pids = [tmp_path / f"pid{r}" for r in (0, 1)]
    deadline = time.monotonic() + 30
    while not all(p.is_file() and p.read_text() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.kill()
    proc.wait()

    def alive(pid: int) -> bool:  # a zombie awaiting its reaper counts as gone
        try:
            return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while any(alive(int(p.read_text())) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(int(p.read_text())) for p in pids)
