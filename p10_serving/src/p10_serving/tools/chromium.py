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


def run_chromium(url: str, profile: str | Path, *extra: str, budget_ms: int = 5000, timeout: float = 45,
                 attempts: int = 2):
    """Load url in headless Chromium (virtual time budget_ms for the page's scripts); the finished process.

    Headless Chromium now and then never exits after its work is done (seen once in CI: a screenshot of a page
    that polls its server hung past 120 s), so each attempt is killed after `timeout` seconds and tried again
    with a fresh profile; TimeoutError, saying so, when every attempt hung."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    for attempt in range(attempts):
        folder = Path(profile) / f"attempt-{attempt}"
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={folder}", f"--virtual-time-budget={budget_ms}", *extra, url]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:  # subprocess.run has killed it
            print(f"chromium did not exit within {timeout:.0f} s (attempt {attempt + 1} of {attempts})", flush=True)
    raise TimeoutError(f"headless chromium hung {attempts} times on {url}")
