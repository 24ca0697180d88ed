"""The retraining hook: hand a dlm-retrain-event/1 to the retrainer and wait for its result. With a command, it
runs here as `command EVENT` (a subprocess, killed at the timeout); without one, an external worker
(`run_retrain_worker`) watching the folder writes the result."""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from pathlib import Path

from dlm_core.errors import DlmError


class Hook:
    def __init__(self, dirs: dict, command: str | None, timeout_s: float, poll_s: float):
        self.dirs, self.command, self.timeout_s, self.poll_s = dirs, command, timeout_s, poll_s
        self.procs: set[asyncio.subprocess.Process] = set()

    async def run(self, eid: str, event_path: Path, on_start=None, started: float | None = None) -> dict:
        """The retrainer's result for event `eid` ({"bundle": ...}); DlmError when it failed or timed out. A result
        already there (a retrain that finished while the server was down) is taken as it is; `started`: when the
        retrain began (the timeout counts from it); on_start(pid) hears of the hook's process."""
        t0, rc = started or time.time(), None
        result_path = self.dirs["results"] / f"{eid}.json"
        if self.command and not result_path.exists():
            rc = await self.subprocess(eid, event_path, max(1.0, self.timeout_s - (time.time() - t0)), on_start)
        while not result_path.exists():  # an external worker, or a hook that died without a result
            if time.time() - t0 > self.timeout_s or rc is not None:
                raise DlmError(f"no result after {time.time() - t0:.0f} s" + (
                    f" (hook exit code {rc}; log {self.dirs['logs'] / (eid + '.log')})" if self.command else ""))
            await asyncio.sleep(self.poll_s)
        result = json.loads(result_path.read_text())
        if "error" in result:
            raise DlmError(f"the retrainer failed: {result['error']}")
        return result

    async def subprocess(self, eid: str, event_path: Path, timeout_s: float, on_start=None) -> int | None:
        with open(self.dirs["logs"] / f"{eid}.log", "ab") as logf:
            proc = await asyncio.create_subprocess_exec(*shlex.split(self.command), str(event_path),
                                                        stdout=logf, stderr=asyncio.subprocess.STDOUT)
            self.procs.add(proc)
            if on_start:
                on_start(proc.pid)
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            finally:
                self.procs.discard(proc)
                if proc.returncode is None:
                    proc.kill()
        # a result written before exit is picked up; a missing one fails at once (rc is not None)
        return None if (self.dirs["results"] / f"{eid}.json").exists() else proc.returncode

    def kill(self) -> None:
        for proc in list(self.procs):
            try:
                proc.kill()
            except ProcessLookupError:
                pass
