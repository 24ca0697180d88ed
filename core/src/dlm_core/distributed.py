"""Data-parallel training under torchrun: DDP on gloo (CPU) or nccl (CUDA), rank-0 logging/checkpoints.

    torchrun --standalone --nproc_per_node=2 -m p03_cnn.train ...

A trainer calls `dist = init_distributed(device)` first, wraps the model with `dist.wrap(model)`,
builds its loader with `dist.sampler(dataset, shuffle, seed)`, writes only when `dist.is_main`, and
ends with `dist.shutdown()`.
"""

from __future__ import annotations

import dataclasses
import os
import sys


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
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)
