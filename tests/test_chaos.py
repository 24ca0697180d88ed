"""The serving loop under SIGKILL (issue #31): a real run_serve on 127.0.0.1 with a state dir, an admin token and
a retraining hook; a client streams predictions and labels them by prediction id (the input again when the id is
not in the log); the server is SIGKILLed at seeded points (mid-stream before any alert, during a retrain, right
after a swap, right after the gate rejected a candidate, after a rollback) and started again on the same state
dir each time. After every restart: the version served is the one served before the kill, every feedback row
acknowledged with a 2xx is in the store exactly once, the event history continues without a gap. The loop ends
as it would without kills: the retrain started before the kill is picked up and swapped in, the rejected
candidate and the rolled-back version are never served again (`--all` included).

Models: untrained toy classifiers (A serving, B a better candidate, D a copy of B that the gate must reject);
truth is B's answer in the first phase (A is wrong on every row sent), then A's (B is wrong): the accuracy
criterion opens each episode. The gate's fixed test set is real Fashion-MNIST (its margin opened wide: toy models
are all at chance there); its McNemar test on held-out feedback decides."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from dlm_core.net import free_port, wait_http_ready
from dlm_core.predictors import load_predictor
from dlm_core.testing import toy_image_bundle

BIN = Path(sys.executable).parent
SEED = 20261205
RETRAINER = """
import json, sys, time
from pathlib import Path
from dlm_core.retrain import read_event, write_result
plan = json.loads(Path(sys.argv[1]).read_text())
event = read_event(sys.argv[-1])
time.sleep(plan["sleep_s"])  # long enough for a kill to land while it runs
write_result(event, bundle=plan["candidates"][event["version"]])
"""


class Server:
    def __init__(self, tmp: Path, plan: Path):
        self.tmp, self.state, self.proc, self.base, self.starts = tmp, tmp / "state", None, None, 0
        self.token = "chaos-" + "t" * 40
        (tmp / "token").write_text(self.token + "\n")
        (tmp / "retrainer.py").write_text(RETRAINER)
        self.flags = ["--state-dir", str(self.state), "--admin-token-file", str(tmp / "token"),
                      "--retrain-dir", str(tmp / "retrain"),
                      "--retrain-command", f"{sys.executable} {tmp / 'retrainer.py'} {plan}",
                      "--retrain-accuracy-window", "20", "--retrain-min-feedback", "40", "--retrain-cooldown", "8",
                      "--gate-margin", "1", "--gate-test-rows", "300", "--unload-grace", "1",
                      "--drift-window", "5000", "--drift-min-rows", "5000"]

    def start(self, *bundles: str) -> httpx.Client:
        port = free_port()
        self.starts += 1
        self.proc = subprocess.Popen([str(BIN / "run_serve"), *bundles, "--port", str(port), *self.flags],
                                     stdout=open(self.tmp / f"serve-{self.starts}.log", "wb"), stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{port}"
        wait_http_ready(f"{self.base}/v2/health/ready", timeout=90, proc=self.proc)
        return httpx.Client(base_url=self.base, timeout=30, headers={"Authorization": f"Bearer {self.token}"})

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stored_feedback(self) -> tuple[list, int]:
        """(prediction ids, rows) of the feedback table, read beside the live server (SQLite's WAL allows it)."""
        with sqlite3.connect(self.state / "state.sqlite") as db:
            ids = [r[0] for r in db.execute("SELECT prediction_id FROM feedback WHERE prediction_id IS NOT NULL")]
            return ids, db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]


class Client:
    """Predict 10 rows, label them by id (or with the input when an id is not in the log)."""

    def __init__(self, http: httpx.Client, images: np.ndarray, truth: dict):
        self.http, self.images, self.truth = http, images, truth
        self.acked_ids, self.acked_rows, self.sent = [], 0, 0

    def step(self, phase: str) -> str:
        i = self.sent % len(self.images)
        xs = self.images[i:i + 10]
        self.sent += len(xs)
        r = self.http.post("/v1/models/life/predict", json={"instances": xs.tolist()})
        assert r.status_code == 200, r.text
        answer = r.json()
        ids = [p["prediction_id"] for p in answer["predictions"]]
        labels = [int(y) for y in self.truth[phase][i:i + len(xs)]]
        r = self.http.post("/v1/models/life/feedback", json={"prediction_ids": ids, "labels": labels})
        if r.status_code == 404:  # not in the log (answered just before a kill): send the inputs instead
            r = self.http.post("/v1/models/life/feedback", json={"instances": xs.tolist(), "labels": labels})
        else:
            self.acked_ids += ids
        assert r.status_code == 200, r.text
        self.acked_rows += len(xs)
        return answer["version"]

    def events(self) -> list[dict]:
        return self.http.get("/v1/events").json()["events"]

    def version(self) -> str:
        return self.http.get("/v1/models/life").json()["version"]

    def until(self, kind: str, phase: str, after: int = 0, timeout: float = 120) -> dict:
        """Stream (about 100 rows a second) until an event of `kind` (with seq > after) appears; that event."""
        t0 = time.time()
        while True:
            found = [e for e in self.events() if e["kind"] == kind and e["seq"] > after]
            if found:
                return found[0]
            assert time.time() - t0 < timeout, (kind, self.events()[-5:])
            self.step(phase)
            time.sleep(0.1)


def test_sigkill_at_every_stage_loses_nothing_and_the_loop_ends_as_without_kills(tmp_path):
    rng = np.random.default_rng(SEED)
    root = tmp_path / "artifacts"
    a = toy_image_bundle(root, name="life", version="1", dataset="fashion-mnist")
    b = toy_image_bundle(root, name="life", version="2", weights_seed=1, dataset="fashion-mnist")
    d = toy_image_bundle(tmp_path / "candidates", name="life", version="3", weights_seed=1, dataset="fashion-mnist")
    pool = rng.integers(0, 256, (2000, 28, 28)).astype(np.uint8)
    pa, pb = (load_predictor(p) for p in (a, b))
    ya, yb = (p.run([p.prepare(x) for x in pool]).signal.astype(int) for p in (pa, pb))
    keep = ya != yb  # rows on which A and B disagree: whichever is the truth, the other is wrong on every one
    images, truth = pool[keep][:600], {"b": yb[keep][:600], "a": ya[keep][:600]}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"sleep_s": 3, "candidates": {"1": str(b), "2": str(d)}}))

    server = Server(tmp_path, plan)
    c = Client(server.start(str(a)), images, truth)
    history: list[tuple] = []
    kills = []

    def kill_and_restart(why: str, *bundles: str) -> None:
        before_version, before_events = c.version(), [(e["seq"], e["kind"]) for e in c.events()]
        server.kill()
        c.http = server.start(*(bundles or (str(a),)))
        events = c.events()
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1)), f"a gap in the event history after {why}: {seqs}"
        assert [(e["seq"], e["kind"]) for e in events[:len(before_events)]] == before_events
        assert events[-1]["kind"] == "resumed"
        assert c.version() == before_version, f"served {c.version()} after {why}, {before_version} before"
        ids, rows = server.stored_feedback()
        assert sorted(ids) == sorted(c.acked_ids) and rows == c.acked_rows, why  # each acknowledged row, once
        kills.append({"at": why, "version": before_version, "rows_acked": c.acked_rows, "rows_stored": rows})
        history.extend(before_events)

    # 1. mid-stream, before any alert: a seeded number of chunks (the episode needs 2 windows of 20 rows)
    for _ in range(int(rng.integers(1, 4))):
        assert c.step("b") == "1"
    assert not [e for e in c.events() if e["kind"] == "episode"]
    kill_and_restart("mid-stream")
    # 2. during the retrain: it was started before the kill; after the restart the same event is swapped in
    started = c.until("retrain_started", "b")
    kill_and_restart("during a retrain")
    swap = c.until("swap", "b", after=started["seq"])
    assert swap["id"] == started["id"] and swap["version"] == "2" and swap["gate"]["passed"]
    # 3. right after the swap: still version 2, loaded from the state (the command line names only version 1)
    kill_and_restart("right after a swap")
    # the stream recovered: version 2 answers, and is right on the phase-1 truth
    assert c.step("b") == "2" and c.http.get("/v1/models/life/lifecycle").json()["live_accuracy"] in (None, 1.0)
    # 4. a new episode (the truth turns to A's answers), a retrain whose candidate the gate rejects
    rejected = c.until("gate_rejected", "a", after=swap["seq"])
    assert rejected["candidate"] == "3"
    kill_and_restart("right after a rejection")
    # 5. a rollback to version 1, then a restart with --all: neither 3 (rejected) nor 2 (rolled back) comes back
    r = c.http.post("/v1/models/life/rollback")
    assert r.status_code == 200 and r.json()["version"] == "1", r.text
    (root / "life" / "3").symlink_to(d, target_is_directory=True)  # the rejected candidate, next to the others
    kill_and_restart("after a rollback", "--all", "--artifacts", str(root))
    loaded = sorted(m["version"] for m in c.http.get("/v1/models").json()["models"])
    assert c.version() == "1" and "3" not in loaded, loaded
    assert c.step("a") == "1"
    server.kill()
    (tmp_path / "kills.json").write_text(json.dumps(kills, indent=1))
    print(json.dumps(kills))
    assert len(kills) == 5
