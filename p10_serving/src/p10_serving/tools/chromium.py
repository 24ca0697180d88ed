"""Headless Chromium, as run_fullstack's screenshot and the dashboard's browser test drive the page: no sandbox
(root in CI), no network besides the page, a throwaway profile."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--hide-scrollbars", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def run_chromium(url: str, profile: str | Path, *extra: str, budget_ms: int = 5000, timeout: float = 120):
    """Load url in headless Chromium (virtual time budget_ms for the page's scripts); the finished process."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
