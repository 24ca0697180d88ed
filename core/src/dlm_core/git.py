"""Which commit the code runs at, for provenance (bundle manifests) and results (results/summary.json)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The short (12-hex) commit of the tree at `cwd` (default: dlm_core's own source), '-dirty' appended if
    tracked files have uncommitted changes; 'unknown' outside a git tree or without git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
