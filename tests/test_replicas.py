"""Replicas behind a real balancer (issue #32): two run_serve processes on one PostgreSQL store, HAProxy in front
health-checking /v2/health/ready, and the retraining worker, all as processes on 127.0.0.1. Under an open-loop
load through the balancer: feedback sent to both replicas is counted once; one episode starts one retrain
(whichever replica saw the rows: only the lease holder judges); the swap reaches both replicas within T seconds
with no failed request, and every answer sent after T carries the new version; a replica SIGKILLed under load
costs at most the requests it had in flight, the balancer routes around it and takes it back once it is ready.

Models: untrained toy classifiers, A serving and B the candidate the retrainer hands back; the truth is B's answer
on rows where A and B disagree, so A's live accuracy is 0 and the accuracy criterion opens the episode. The gate's
test set is real Fashion-MNIST (margin opened: toy models are at chance there); McNemar on held-out feedback
decides."""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from dlm_core.net import free_port, wait_http_ready
from dlm_core.predictors import load_predictor
from dlm_core.testing import PostgresServer, toy_image_bundle
from p10_serving.tools.haproxy import find_haproxy, haproxy_config

BIN = Path(sys.executable).parent
T_BOUND_S = 3.0  # a follower looks at the store every 0.5 s, then loads and verifies the bundle (< 1 s here)
RETRAINER = """
import json, sys, time
from pathlib import Path
from dlm_core.retrain import read_event, write_result
plan = json.loads(Path(sys.argv[1]).read_text())
event = read_event(sys.argv[-1])
time.sleep(1)
write_result(event, bundle=plan[event["version"]])
"""


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer.start_or_skip()
    yield server
    server.stop()


class Replicas:
    def __init__(self, tmp: Path, store_url: str, bundle: Path, plan: Path):
        self.tmp, self.bundle, self.procs, self.ports = tmp, bundle, {}, {}
        self.token = "replicas-" + "k" * 40
        (tmp / "token").write_text(self.token + "\n")
        self.flags = ["--store-url", store_url, "--admin-token-file", str(tmp / "token"),
                      "--retrain-dir", str(tmp / "retrain"), "--retrain-accuracy-window", "20",
                      "--retrain-min-feedback", "40", "--retrain-cooldown", "600", "--gate-margin", "1",
                      "--gate-test-rows", "300", "--unload-grace", "2", "--lease-s", "3",
                      "--drift-window", "5000", "--drift-min-rows", "5000"]
        (tmp / "retrainer.py").write_text(RETRAINER)
        self.worker = subprocess.Popen([str(BIN / "run_retrain_worker"), str(tmp / "retrain"), "--poll", "0.3",
                                        "--command", f"{sys.executable} {tmp / 'retrainer.py'} {plan}"],
                                       stdout=open(tmp / "worker.log", "wb"), stderr=subprocess.STDOUT)

    def start(self, name: str) -> None:
        port = self.ports.setdefault(name, free_port())
        self.procs[name] = subprocess.Popen(
            [str(BIN / "run_serve"), str(self.bundle), "--port", str(port), "--replica-id", name, *self.flags],
            stdout=open(self.tmp / f"{name}.log", "ab"), stderr=subprocess.STDOUT)
        wait_http_ready(f"http://127.0.0.1:{port}/v2/health/ready", timeout=90, proc=self.procs[name])

    def direct(self, name: str) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.ports[name]}", timeout=10)

    def stop(self) -> None:
        for p in [*self.procs.values(), self.worker]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.procs.values(), self.worker]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


class Load:
    """Open-loop predict requests through the balancer at `rate` per second, each recorded (send time, status,
    version), from a thread with its own event loop."""

    def __init__(self, base: str, images: np.ndarray, rate: float):
        self.base, self.images, self.rate = base, images, rate
        self.rows: list[dict] = []
        self.in_flight = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: __import__("asyncio").run(self.run()), daemon=True)

    async def run(self) -> None:
        import asyncio

        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)
        async with httpx.AsyncClient(base_url=self.base, timeout=10, limits=limits) as client:
            tasks, t0, i = set(), time.perf_counter(), 0
            while not self.stopping.is_set():
                delay = t0 + i / self.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self.one(client, i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.gather(*tasks)

    async def one(self, client: httpx.AsyncClient, i: int) -> None:
        sent, x = time.time(), self.images[i % len(self.images)]
        self.in_flight += 1
        try:
            r = await client.post("/v1/models/life/predict", json={"input": x.tolist()})
            row = {"t": sent, "status": r.status_code, "version": r.json().get("version") if r.status_code == 200
                   else None}
        except httpx.HTTPError as err:
            row = {"t": sent, "status": type(err).__name__, "version": None}
        self.in_flight -= 1
        row["done"] = time.time()
        self.rows.append(row)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=30)


def test_two_replicas_behind_haproxy_agree_and_survive_a_kill(postgres, tmp_path):
    haproxy = find_haproxy()
    if haproxy is None:
        pytest.skip("HAProxy is not installed (make test installs Debian's haproxy)")
    rng = np.random.default_rng(32)
    root = tmp_path / "artifacts"
    a = toy_image_bundle(root, name="life", version="1", dataset="fashion-mnist")
    b = toy_image_bundle(root, name="life", version="2", weights_seed=1, dataset="fashion-mnist")
    pool = rng.integers(0, 256, (1500, 28, 28)).astype(np.uint8)
    pa, pb = load_predictor(a), load_predictor(b)
    ya, yb = (p.run([p.prepare(x) for x in pool]).signal.astype(int) for p in (pa, pb))
    images, truth = pool[ya != yb][:500], yb[ya != yb][:500]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"1": str(b)}))

    reps = Replicas(tmp_path, postgres.new_database(), a, plan)
    balancer = None
    try:
        reps.start("r1")  # first: it takes the lifecycle lease
        reps.start("r2")
        port = free_port()
        (tmp_path / "haproxy.cfg").write_text(haproxy_config(f"127.0.0.1:{port}", {
            n: f"127.0.0.1:{p}" for n, p in reps.ports.items()}))
        balancer = subprocess.Popen([haproxy, "-f", str(tmp_path / "haproxy.cfg"), "-db"],
                                    stdout=open(tmp_path / "haproxy.log", "wb"), stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_http_ready(f"{base}/v2/health/ready", timeout=30, proc=balancer)
        status = [reps.direct(n).get("/v1/models/life/lifecycle").json() for n in ("r1", "r2")]
        assert [s["leader"] for s in status] == [True, False]
        admin = httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {reps.token}"})

        with Load(base, images, rate=60) as load:
            # feedback through the balancer (round robin: both replicas), by prediction id: counted once
            acked, i = 0, 0
            while not any(e["kind"] == "swap" for e in admin.get("/v1/events").json()["events"]):
                xs = images[i % 450:i % 450 + 10]
                ids = [p["prediction_id"] for p in admin.post("/v1/models/life/predict", json={
                    "instances": xs.tolist()}).json()["predictions"]]
                labels = [int(y) for y in truth[i % 450:i % 450 + 10]]
                r = admin.post("/v1/models/life/feedback", json={"prediction_ids": ids, "labels": labels})
                if r.status_code == 404:  # answered by the other replica, not yet in the shared log
                    r = admin.post("/v1/models/life/feedback", json={"instances": xs.tolist(), "labels": labels})
                assert r.status_code == 200, r.text
                acked, i = acked + len(xs), i + 10
                assert i < 3000, admin.get("/v1/events").json()
                time.sleep(0.05)
            events = admin.get("/v1/events").json()["events"]
            swap = next(e for e in events if e["kind"] == "swap")
            # the swap reaches both replicas within T
            reached = {}
            while len(reached) < 2 and time.time() - swap["time"] < 30:
                for n in ("r1", "r2"):
                    if n not in reached and reps.direct(n).get("/v1/models/life").json()["version"] == "2":
                        reached[n] = time.time() - swap["time"]
                time.sleep(0.02)
            t_swap = max(reached.values())
            time.sleep(2)
            # one replica SIGKILLed under load, then started again
            in_flight = load.in_flight
            kill_at = time.time()
            reps.procs["r2"].send_signal(signal.SIGKILL)
            reps.procs["r2"].wait()
            time.sleep(2)
            reps.start("r2")
            back_at = time.time()
            time.sleep(3)

        feedback = {s["replica"]: s["feedback_rows"] for s in
                    (reps.direct(n).get("/v1/models/life/lifecycle").json() for n in ("r1", "r2"))}
        assert set(feedback.values()) == {acked}, (feedback, acked)  # both see the one count
        kinds = [e["kind"] for e in admin.get("/v1/events").json()["events"]]
        assert kinds.count("episode") == 1 and kinds.count("retrain_started") == 1, kinds
        assert swap["version"] == "2" and swap["gate"]["passed"]
        assert t_swap <= T_BOUND_S, reached
        rows = load.rows
        around_swap = [r for r in rows if swap["time"] - 5 <= r["t"] < kill_at]
        assert around_swap and all(r["status"] == 200 for r in around_swap), [r for r in around_swap
                                                                             if r["status"] != 200][:5]
        assert all(r["version"] == "2" for r in around_swap if r["t"] > swap["time"] + t_swap)
        failed = [r for r in rows if r["status"] != 200]
        assert len(failed) <= in_flight, (failed, in_flight)
        assert all(r["t"] < kill_at + 1 for r in failed), failed  # only what was in flight, none later
        after = [r for r in rows if r["t"] > back_at]
        assert after and all(r["status"] == 200 and r["version"] == "2" for r in after)
        # a manual retrain asked of the follower: a request (202) that the leader turns into one retrain
        r = reps.direct("r2").post("/v1/models/life/retrain", headers={"Authorization": f"Bearer {reps.token}"})
        assert r.status_code == 202 and r.json()["leader"] == "r1", r.text
        t0 = time.time()
        while not [e for e in admin.get("/v1/events").json()["events"] if e["kind"] == "retrain_started"
                   and e["reason"] == "manual"]:
            assert time.time() - t0 < 10, "the leader did not act on the request"
            time.sleep(0.1)
        time.sleep(1.5)  # a few more looks of the leader: still one retrain for the one request
        manual = [e for e in admin.get("/v1/events").json()["events"] if e["kind"] == "retrain_started"
                  and e["reason"] == "manual"]
        assert len(manual) == 1
        # the leader SIGKILLed: the other replica takes the lifecycle lease once it runs out (--lease-s 3)
        reps.procs["r1"].send_signal(signal.SIGKILL)
        reps.procs["r1"].wait()
        t0 = time.time()
        while not reps.direct("r2").get("/v1/models/life/lifecycle").json()["leader"]:
            assert time.time() - t0 < 10, "r2 never took the lease over"
            time.sleep(0.1)
        takeover = time.time() - t0
        assert admin.get("/v1/models/life").json()["version"] == "2"  # through the balancer, on r2 alone
        summary = {"swap_reached_s": reached, "leader_takeover_s": round(takeover, 2), "requests": len(rows),
                   "failed": len(failed), "in_flight_at_kill": in_flight, "feedback_rows": acked}
        (tmp_path / "replicas.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary))
    finally:
        if balancer is not None:
            balancer.terminate()
            balancer.wait(timeout=10)
        reps.stop()
