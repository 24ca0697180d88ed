"""What the podman tests of tests/docker share: the skip where podman cannot run (not root, not installed), the
environment it runs with here, and scripts/build_images.sh (which reuses the cached layers of unchanged inputs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = "/etc/containers/dlm-containers.conf"  # what scripts/build_images.sh writes: no default ulimits


def _podman_missing() -> str | None:
    if shutil.which("podman") is None or shutil.which("runc") is None:
        return "podman/runc are not installed (as root: apt-get install -y podman buildah runc debootstrap)"
    if os.geteuid() != 0:
        return "the podman tests run as root only (rootful podman with the runc runtime)"
    return None


@pytest.fixture
def podman_env() -> dict:
    """The environment for podman (and podman-compose) here; skips, saying why, where podman cannot run."""
    reason = _podman_missing()
    if reason:
        print(f"skipped: {reason}")
        pytest.skip(reason)
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", CONTAINERS_CONF)}


@pytest.fixture
def build_images(podman_env):
    """build_images(what): scripts/build_images.sh WHAT (it writes CONTAINERS_CONF's file when missing); seconds."""

    def build(what: str) -> float:
        t0 = time.monotonic()
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "build_images.sh"), what], capture_output=True,
                              text=True, cwd=ROOT, timeout=1200)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        seconds = time.monotonic() - t0
        print(f"scripts/build_images.sh {what}: {seconds:.0f} s")
        return seconds

    return build
