"""Run under torchrun: one DDP step on this rank's half of a fixed global batch; rank 0 saves the grads."""

import sys

import torch

from dlm_core.distributed import init_distributed


def global_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


if __name__ == "__main__":
    ctx = init_distributed(torch.device("cpu"))
    model = ctx.wrap(make_model())
    x, y = global_batch()
    per_rank = len(x) // ctx.world_size
    sl = slice(ctx.rank * per_rank, (ctx.rank + 1) * per_rank)
    torch.nn.functional.cross_entropy(model(x[sl]), y[sl]).backward()  # DDP averages grads across ranks
    if ctx.is_main:
        torch.save({n: p.grad for n, p in model.module.named_parameters()}, sys.argv[1])
    ctx.barrier()
    ctx.shutdown()
