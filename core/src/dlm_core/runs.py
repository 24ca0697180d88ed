"""Run directories: runs/<project>/<run-id>/ with config.json, metrics.jsonl, checkpoints, plots, report.md."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from .errors import DlmError
from .io import write_json, write_text


def runs_root() -> Path:
    return Path(os.environ.get("DLM_RUNS", "runs"))


def new_run_id(name: str | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{name}" if name else stamp


class RunDir:
    """A run's folder. Create with RunDir.create(...) or reopen an existing one with RunDir(path)."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled  # False on non-zero DDP ranks: every write becomes a no-op

    @classmethod
    def create(cls, project: str, config=None, run_id: str | None = None, root: str | os.PathLike | None = None,
               enabled: bool = True) -> RunDir:
        root = Path(root) if root is not None else runs_root()
        path = root / project / (run_id or new_run_id())
        if run_id is None and enabled:  # two runs started in the same second get -2, -3 ...
            base, n = path, 1
            while path.exists():
                n += 1
                path = base.with_name(f"{base.name}-{n}")
        run = cls(path, enabled=enabled)
        if enabled:
            run.path.mkdir(parents=True, exist_ok=True)
            (run.path / "checkpoints").mkdir(exist_ok=True)
            if config is not None:
                run.save_config(config)
        return run

    @classmethod
    def at(cls, path: str | os.PathLike, config=None, enabled: bool = True) -> RunDir:
        """Create the run at an explicit path, or reopen it (to resume) when it already exists."""
        run = cls(path, enabled=enabled)
        if enabled:
            run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            if config is not None:
                run.save_config(config)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise DlmError(f"{path} is not a run directory (no config.json); pass a folder under runs/<project>/")
        return cls(path)

    # --- files -------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def save_config(self, config) -> None:
        if self.enabled:
            data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
            write_json(self.path / "config.json", data)

    def load_config(self) -> dict:
        return json.loads((self.path / "config.json").read_text())

    def log(self, **metrics) -> None:
        """Append one JSON object (a step or an epoch) to metrics.jsonl."""
        if not self.enabled:
            return
        record = {k: _plain(v) for k, v in metrics.items()}
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def metrics(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill: ignore it
                    continue
        return rows

    def truncate_metrics(self, keep) -> None:
        """Drop logged rows that a resumed run will log again (keep(row) -> bool)."""
        if self.enabled:
            rows = [r for r in self.metrics() if keep(r)]
            write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))

    def write_report(self, text: str) -> Path:
        return write_text(self.path / "report.md", text) if self.enabled else self.path / "report.md"

    def write_json(self, name: str, obj) -> Path:
        return write_json(self.path / name, obj) if self.enabled else self.path / name


def _plain(v):
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        return v.item()
    return v


def format_metrics(**metrics) -> str:
    """`epoch: 3 train_loss: 0.1234 val_acc: 0.912`: the one-line console format every CLI uses."""
    parts = []
    for k, v in metrics.items():
        v = _plain(v)
        if isinstance(v, float):
            v = f"{v:.1f}" if abs(v) >= 1000 else f"{v:.4g}"
        parts.append(f"{k}: {v}")
    return " ".join(parts)


def print_metrics(**metrics) -> None:
    print(format_metrics(**metrics), flush=True)


def progress(iterable=None, total=None, desc: str | None = None, leave: bool = False, **kw):
    """A tqdm bar on stderr; call bar.set_postfix(loss=...) for live metrics. Quiet when DLM_NO_PROGRESS=1, and
    on every rank but 0 of a distributed job (one bar, not one per rank)."""
    from tqdm.auto import tqdm

    disable = (os.environ.get("DLM_NO_PROGRESS") == "1" or not sys.stderr.isatty()
               or os.environ.get("RANK", "0") != "0")
    return tqdm(iterable, total=total, desc=desc, leave=leave, disable=disable, mininterval=0.5,
                dynamic_ncols=True, **kw)


def list_runs(root: str | os.PathLike | None = None) -> list[dict]:
    root = Path(root) if root is not None else runs_root()
    out = []
    if not root.is_dir():
        return out
    for cfg in sorted(root.glob("*/*/config.json")):
        run = RunDir(cfg.parent)
        rows = run.metrics()
        out.append({
            "project": cfg.parent.parent.name,
            "run": cfg.parent.name,
            "path": str(cfg.parent),
            "rows": len(rows),
            "last": rows[-1] if rows else {},
            "report": (cfg.parent / "report.md").exists(),
        })
    return out
