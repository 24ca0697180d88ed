"""What every bench/*.py shares: the machine's description, interleaved median timing, the JSON result.

    result = {"bench": "p03_cnn", "machine": machine(), "ours": {...}, "peer": {...}, "ratio": r, "goal": "..."}
    write_result("p03_cnn", result)     # prints it and writes bench/results/p03_cnn.json atomically
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .io import write_json


def unshadow(bench_file: str, package: str) -> None:
    """bench/p03_cnn.py run as a script puts bench/ first on sys.path, so `import p03_cnn` would find the
    bench file itself. Drop that folder (and a module already imported from it) before importing the package."""

    here = Path(bench_file).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    mod = sys.modules.get(package)
    if mod is not None and Path(getattr(mod, "__file__", "") or "").resolve().parent == here:
        del sys.modules[package]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The hardware a figure came from (CPU model, cores, load when measured, GPU if any)."""
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def interleaved_medians(candidates: dict[str, Callable[[], object]], rounds: int = 20,
                        warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in alternation so load spikes hit all of them."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def gnu_time(log: str | os.PathLike) -> dict:
    """Wall and CPU seconds from a `/usr/bin/time -v` report inside a log file ({} when there is none)."""
    log = Path(log)
    if not log.exists():
        return {}
    text = log.read_text(errors="replace")
    out = {}
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", text)
    if m:
        out["wall_s"] = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    cpu = [float(v) for v in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)]
    if cpu:
        out["cpu_s"] = sum(cpu)
    return out


def results_dir() -> Path:
    return Path(os.environ.get("DLM_BENCH_RESULTS", Path(__file__).resolve().parents[3] / "bench" / "results"))


def write_result(name: str, result: dict, path: str | os.PathLike | None = None) -> Path:
    """Print the result as one JSON object and write it to bench/results/<name>.json (or `path`)."""
    print(json.dumps(result))
    return write_json(Path(path) if path else results_dir() / f"{name}.json", result)
