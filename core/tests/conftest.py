import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DLM = [sys.executable, "-m", "dlm_core.cli"]


def run_dlm(*args, env=None, timeout=120):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*DLM, *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO)


@pytest.fixture
def dlm():
    return run_dlm
