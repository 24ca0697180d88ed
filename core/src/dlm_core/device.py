"""The one place that knows about accelerators: device choice, autocast, CPU threads."""

from __future__ import annotations

import contextlib
import functools
import os

from .errors import DlmError


def set_cpu_threads(n: int | None = None) -> int:
    """Use every core we were given (2 here) for intra-op work, one thread for inter-op; under torchrun the
    cores are shared out among the machine's ranks (two ranks with two threads each on two cores wait on each
    other at every op)."""
    import torch

    n = n or int(os.environ.get("DLM_THREADS", 0)) or threads_per_rank(int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # can only be set once per process
        torch.set_num_interop_threads(1)
    return n


def threads_per_rank(ranks: int) -> int:
    """This machine's cores shared out among `ranks` processes (at least one thread each)."""
    return max(1, (os.cpu_count() or 1) // max(1, ranks))


def accelerator_available() -> str | None:
    """'cuda' or 'mps' when `--device auto` would pick one, else None (auto means the CPU)."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return None


def select_device(spec: str = "auto"):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps' -> torch.device, with a clear error when unavailable."""
    import torch

    spec = (spec or "auto").lower()
    if spec == "auto":
        if accelerator := accelerator_available():
            return torch.device(accelerator)
        set_cpu_threads()
        return torch.device("cpu")
    if spec == "cpu":
        set_cpu_threads()
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DlmError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
        index = spec.partition(":")[2]
        if index:
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise DlmError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(spec)
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DlmError("--device mps: MPS is not available on this machine; use --device cpu or auto")
        return torch.device("mps")
    raise DlmError(f"--device {spec!r} is not a device; use auto, cpu, cuda, cuda:N or mps")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX). Elsewhere oneDNN emulates bf16 and
    autocast makes training slower, not faster. Probed once per process (autocast asks every step)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes
        return False


def uses_bf16(device, cpu_bf16: bool = False) -> bool:
    """Whether autocast(device, cpu_bf16) computes in bf16: always on CUDA; on CPU only when asked and native."""
    kind = getattr(device, "type", str(device))
    return kind == "cuda" or (kind == "cpu" and cpu_bf16 and cpu_has_native_bf16())


def autocast(device, cpu_bf16: bool = False):
    """bf16 autocast on CUDA; on CPU only when asked (`cpu_bf16`) and the CPU has native bf16 (convolutions and
    matrix products in bf16, ~1.8x faster for p03's ResNet on an AVX-512 BF16 EPYC); a no-op context elsewhere.
    The weights and the optimizer state stay float32."""
    import torch

    if not uses_bf16(device, cpu_bf16):
        return contextlib.nullcontext()
    return torch.autocast(getattr(device, "type", str(device)), dtype=torch.bfloat16)


def describe_device(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
