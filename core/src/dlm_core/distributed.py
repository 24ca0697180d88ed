"""Data-parallel training under torchrun: DDP on gloo (CPU) or nccl (CUDA), rank-0 logging/checkpoints.

    torchrun --standalone --nproc_per_node=2 -m p03_cnn.train ...

or, from a trainer's own CLI, `launch_local(cmd, local_ranks(...))`: the same ranks started without torchrun's
elastic agent (one error line from the rank that failed instead of the agent's traceback).

A trainer calls `dist = init_distributed(device)` first, wraps the model with `dist.wrap(model)`,
builds its loader with `dist.sampler(dataset, shuffle, seed)`, writes only when `dist.is_main`, and
ends with `dist.shutdown()`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from .device import accelerator_available, threads_per_rank
from .errors import DlmError


@dataclasses.dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: object = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if getattr(self.device, "type", "cpu") == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sampler(self, dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if not self.enabled:
            return None
        from torch.utils.data import DistributedSampler

        return DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=shuffle,
                                  seed=seed, drop_last=drop_last)

    def all_reduce_mean(self, value: float) -> float:
        if not self.enabled:
            return float(value)
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def shutdown(self) -> None:
        """End the process group. On CPU (gloo) the interpreter's own teardown can abort with SIGABRT
        after the work is done (a known race), so every rank flushes and leaves with os._exit(0)."""
        if not self.enabled:
            return
        import torch.distributed as dist

        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def init_distributed(device=None) -> DistContext:
    """Read torchrun's environment; initialise the process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=device)
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
        torch.set_num_threads(threads_per_rank(int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)


def local_ranks(requested: int, batch_size: int, device: str = "auto", min_rank_batch: int = 64) -> int:
    """How many training processes to start on this machine. `requested` > 0 is taken as given (it must split
    the batch). 0 (auto): on a CPU, one per core as long as each rank keeps >= min_rank_batch images of the
    batch for its BatchNorm statistics; on a GPU or MPS, one. (On 2 idle cores two one-thread ranks train as
    fast as one two-thread process, measured side by side; p03's default was measured with two.)"""
    if requested < 0:
        raise DlmError(f"--procs {requested}: give a number of processes >= 1, or 0 for one per core")
    if requested:
        if batch_size % requested:
            raise DlmError(f"--batch-size {batch_size} does not split evenly over --procs {requested}: the batch is "
                           "the images of one step over all processes")
        return requested
    spec = (device or "auto").lower()
    if spec.startswith(("cuda", "mps")) or (spec == "auto" and accelerator_available()):
        return 1
    n = max(1, min(os.cpu_count() or 1, batch_size // min_rank_batch))
    while batch_size % n:  # an even split of the batch
        n -= 1
    return n


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In a rank, before exec: on Linux ask for SIGTERM when the launcher dies, even by SIGKILL (no orphans)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def launch_local(cmd: list[str], nproc: int, poll_s: float = 0.2, grace_s: float = 3.0) -> int:
    """Run `cmd` as nproc ranks of one job on this machine, with the environment torchrun --standalone gives
    (RANK, WORLD_SIZE, MASTER_ADDR/PORT, one share of the cores each). Returns 0 when every rank exits 0; as
    soon as one fails (or on Ctrl-C / SIGTERM) the others are stopped and its exit code is returned, so a dead
    rank never leaves its peers waiting in a collective. Only rank 0's output is live (one progress bar, one
    error line); another rank's stderr is shown when it alone failed."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(nproc),
           "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads_per_rank(nproc)))}

    def on_term(signum, frame):
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, on_term) if in_main_thread else None
    # rank 0 writes to our stdout/stderr; the others' stderr (the same warnings, the same error line) is kept
    # aside and shown only when that rank is the one that failed
    logs = [None] + [tempfile.TemporaryFile() for _ in range(1, nproc)]
    ranks = []
    try:
        ranks += [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stderr=logs[r],
                                   preexec_fn=_die_with_parent) for r in range(nproc)]
        while True:
            codes = [p.poll() for p in ranks]
            failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                # rank 0 often fails the same way a moment later: give it a grace period, so that its (live)
                # error is the one reported rather than the same line twice
                deadline = time.monotonic() + grace_s
                while ranks[0].poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                if ranks[0].returncode not in (None, 0):
                    return ranks[0].returncode
                logs[failed[0]].seek(0)
                sys.stderr.write(logs[failed[0]].read().decode(errors="replace"))
                return codes[failed[0]]
            if all(c == 0 for c in codes):
                return 0
            time.sleep(poll_s)
    finally:
        for p in ranks:
            if p.poll() is None:
                p.terminate()
        for p in ranks:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs[1:]:
            log.close()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
