"""Shared by the root tests: the full stack's command runner."""

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fullstack():
    """run_fullstack (this venv's) with the given arguments, output captured, 15 minutes at most."""
    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "run_fullstack"), *map(str, args)],
                              capture_output=True, text=True, timeout=900)
    return run
