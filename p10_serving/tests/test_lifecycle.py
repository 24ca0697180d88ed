"""The lifecycle on real toy bundles through the real app: feedback and live accuracy, the retraining criteria
(accuracy drop, K consecutive drift windows, none without a shift), the hook (a real subprocess that answers
with a bundle), the gate (passes a better model, rejects an equal one), the swap, the rollback, failures."""

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dlm_core.predictors import load_predictor
from dlm_core.testing import toy_image_bundle
from p10_serving.app import ServeConfig, create_app
from p10_serving.lifecycle import RetrainPolicy
from p10_serving.lifecycle.gate import Gate

RETRAINER = """
import json, sys
from dlm_core.retrain import read_event, write_result
event = read_event(sys.argv[-1])
if sys.argv[1] == "fail":
    sys.exit(3)
write_result(event, bundle=sys.argv[1], seen_reason=event["reason"])
"""


@pytest.fixture(scope="module")
def life_bundles(tmp_path_factory, bundles):
    root = tmp_path_factory.mktemp("life")
    return {"old": toy_image_bundle(root, name="life", version="1"),
            "better": toy_image_bundle(root, name="life", version="2", weights_seed=1),
            "same": toy_image_bundle(root, name="life", version="3"), "anom": bundles["anom"]}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (400, 28, 28)).astype(np.uint8)


def classes(path, xs) -> np.ndarray:
    p = load_predictor(path)
    return p.run([p.prepare(x) for x in xs]).signal.astype(int)


def client_for(paths, tmp_path, candidate=None, window: int = 100, **policy) -> TestClient:
    script = tmp_path / "retrainer.py"
    script.write_text(RETRAINER)
    command = f"{sys.executable} {script} {candidate}" if candidate else None
    pol = RetrainPolicy(**{"dir": str(tmp_path / "retrain") if candidate else None, "command": command,
                           "poll_s": 0.02, "cooldown_s": 0.0, "accuracy_window": 20, "min_feedback": 30, **policy})
    config = ServeConfig(drift_window=window, drift_min_rows=window, drift_every=window, drift_interval_s=0.0,
                         retrain=pol)
    return TestClient(create_app([load_predictor(p) for p in paths], config))


def wait_for(client, kind: str, timeout: float = 60.0) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        found = [e for e in client.get("/v1/events").json()["events"] if e["kind"] == kind]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event in {timeout} s: {client.get('/v1/events').json()}")


def wait_until(client, check, what: str, timeout: float = 60.0) -> dict:
    """Poll the model's lifecycle status until check(status) holds (the watcher runs every 20 ms here)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        status = client.get("/v1/models/life/lifecycle").json()
        if check(status):
            return status
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached in {timeout} s: {status}")


def send_feedback(client, xs, labels, chunk: int = 10):
    for i in range(0, len(xs), chunk):
        r = client.post("/v1/models/life/feedback", json={"instances": xs[i:i + chunk].tolist(),
                                                          "labels": [int(v) for v in labels[i:i + chunk]]})
        assert r.status_code == 200, r.text
    return r.json()


def test_feedback_gives_live_accuracy_and_refuses_what_it_cannot_use(life_bundles, images, tmp_path):
    own = classes(life_bundles["old"], images[:20])
    with client_for([life_bundles["old"], life_bundles["anom"]], tmp_path) as c:
        out = send_feedback(c, images[:20], own)
        assert out["live_accuracy"] == 1.0 and out["live_accuracy_rows"] == 20 and out["feedback_rows"] == 20
        names = c.get("/v1/models/life").json()
        r = c.post("/v1/models/life/feedback", json={"input": images[0].tolist(), "label": f"class_{own[0]}"})
        assert r.json()["correct"] == 1 and names["version"] == "1"
        for body, says in [({"input": images[0].tolist(), "label": "no_such_class"}, "unknown class"),
                           ({"input": images[0].tolist(), "label": 10}, "outside 0..9"),
                           ({"input": images[0].tolist()}, "need as many labels"),
                           ({"instances": images[:2].tolist(), "labels": [1]}, "need as many labels"),
                           ({"input": [[1, 2], [3]], "label": 1}, "instances[0]"),
                           ({"input": images[0].tolist(), "label": True}, "class name or index")]:
            r = c.post("/v1/models/life/feedback", json=body)
            assert r.status_code == 400 and says in r.json()["error"], (body.keys(), r.json())
        r = c.post("/v1/models/anom/feedback", json={"input": images[0].tolist(), "label": "normal"})
        assert r.status_code == 400 and "class labels" in r.json()["error"]
        assert c.post("/v1/models/nope/feedback", json={"input": 1, "label": 1}).status_code == 404
        # retraining is off here: asking for one is a conflict, not a crash; so is a rollback with no history
        assert c.post("/v1/models/life/retrain").status_code == 409
        assert c.post("/v1/models/life/rollback").status_code == 409
        metrics = c.get("/metrics").text
        assert 'dlm_feedback_rows_total{model="life"} 21.0' in metrics
        assert 'dlm_live_accuracy{model="life",version="1"} 1.0' in metrics


def test_accuracy_drop_retrains_gates_swaps_and_rolls_back(life_bundles, images, tmp_path, monkeypatch):
    old, new = classes(life_bundles["old"], images), classes(life_bundles["better"], images)
    differ = np.flatnonzero(old != new)
    assert len(differ) >= 80, "the two toy models must disagree often enough for this test"
    # the gate's fixed test set: where the candidate is right (so it is no worse than the old model)
    monkeypatch.setattr(Gate, "test_set", lambda self, p: (list(images[:100]), new[:100]))
    # drift windows out of reach (window 100000): the traffic through the swap must not add a drift reason
    with client_for([life_bundles["old"]], tmp_path, candidate=life_bundles["better"], min_feedback=40,
                    window=100_000) as c:
        xs, ys = images[differ[:80]], new[differ[:80]]   # the old model is wrong on every one of them
        send_feedback(c, xs[:20], ys[:20])
        # one low window, judged (no later window can come without more feedback), is not enough for an episode
        status = wait_until(c, lambda s: s["low_accuracy_windows"] == 1, "the first low-accuracy window")
        assert status["episode_reason"] is None
        assert "episode" not in [e["kind"] for e in c.get("/v1/events").json()["events"]]
        send_feedback(c, xs[20:40], ys[20:40])
        episode = wait_for(c, "episode")
        stats = episode["statistics"]["accuracy"]
        assert episode["reason"] == "accuracy" and stats["live_accuracy"] == 0.0
        assert stats["windows"] == 2 and stats["expected_accuracy"] == 0.1
        codes, versions, stop = [], set(), threading.Event()

        def traffic():  # requests in flight through the swap: every one must succeed, on one version or the other
            while not stop.is_set():
                r = c.post("/v1/models/life/predict", json={"instances": images[:4].tolist()})
                codes.append(r.status_code)
                versions.add(r.json().get("version"))

        threads = [threading.Thread(target=traffic) for _ in range(4)]
        for t in threads:
            t.start()
        send_feedback(c, xs[40:], ys[40:])
        started = wait_for(c, "retrain_started")
        swap = wait_for(c, "swap")
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert set(codes) == {200} and versions == {"1", "2"}, (set(codes), versions)
        assert swap["old_version"] == "1" and swap["version"] == "2"
        assert swap["gate"]["passed"] and swap["gate"]["mcnemar_gained"] >= 6 and swap["gate"]["mcnemar_lost"] == 0
        # the event on disk: the reason, the statistics, the old bundle's sha256, the feedback it trains on
        event = json.loads((tmp_path / "retrain" / "events" / f"{started['id']}.json").read_text())
        assert event["reason"] == "accuracy" and event["sha256"] == load_predictor(life_bundles["old"]).sha256
        with np.load(event["feedback"]["train"]) as f:
            # the rows since the episode began (after the first 40), gate rows held out
            assert len(f["y"]) + event["feedback"]["gate_rows"] == 40 and f["x"].shape[1:] == (28, 28)
        assert json.loads((tmp_path / "retrain" / "results" / f"{started['id']}.json").read_text())["seen_reason"] \
            == "accuracy"
        pred = c.post("/v1/models/life/predict", json={"input": images[0].tolist()}).json()
        assert pred["version"] == "2" and c.get("/v1/models/life/lifecycle").json()["previous"] == "1"
        # the old version still answers when asked by version (it keeps running for the rollback)
        v2 = c.post("/v2/models/life/versions/1/infer", json={"inputs": [
            {"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.0] * 784}]})
        assert v2.status_code == 200 and v2.json()["model_version"] == "1"
        back = c.post("/v1/models/life/rollback").json()
        assert back == {"model": "life", "version": "1", "previous": "2"}
        assert c.post("/v1/models/life/predict", json={"input": images[0].tolist()}).json()["version"] == "1"
        assert c.post("/v1/models/life/rollback").json()["version"] == "2"
        kinds = [e["kind"] for e in c.get("/v1/events").json()["events"]]
        assert kinds.count("rollback") == 2 and kinds.count("swap") == 1
        metrics = c.get("/metrics").text
        assert 'dlm_default_version{model="life",version="2"} 1.0' in metrics
        assert 'dlm_lifecycle_events_total{kind="swap",model="life"} 1.0' in metrics


def test_gate_rejects_a_candidate_that_is_no_better(life_bundles, images, tmp_path, monkeypatch):
    own = classes(life_bundles["old"], images)
    monkeypatch.setattr(Gate, "test_set", lambda self, p: (list(images[:100]), own[:100]))
    with client_for([life_bundles["old"]], tmp_path, candidate=life_bundles["same"]) as c:
        assert c.post("/v1/models/life/retrain").status_code == 409  # no feedback yet
        send_feedback(c, images[:40], (own[:40] + 1) % 10)  # wrong labels do not matter to a manual retrain
        r = c.post("/v1/models/life/retrain")
        assert r.status_code == 200, r.text
        rejected = wait_for(c, "gate_rejected")
        assert not rejected["gate"]["better_on_feedback"] and rejected["gate"]["mcnemar_gained"] == 0
        assert c.get("/v1/models/life/lifecycle").json()["version"] == "1"
        assert "swap" not in [e["kind"] for e in c.get("/v1/events").json()["events"]]


def test_a_failing_retrainer_is_an_event_not_a_crash(life_bundles, images, tmp_path):
    with client_for([life_bundles["old"]], tmp_path, candidate="fail") as c:
        send_feedback(c, images[:40], classes(life_bundles["old"], images[:40]))
        assert c.post("/v1/models/life/retrain").status_code == 200
        failed = wait_for(c, "retrain_failed")
        assert "exit code 3" in failed["error"]
        assert c.post("/v1/models/life/predict", json={"input": images[0].tolist()}).status_code == 200


def send_windows(c, xs, window: int, chunk: int = 25) -> dict:
    """Stream xs one drift window at a time, waiting after each until the watcher has judged it."""
    for start in range(0, len(xs), window):
        judged = c.get("/v1/models/life/lifecycle").json()["drift_windows_judged"]
        for i in range(start, start + window, chunk):
            r = c.post("/v1/models/life/predict", json={"instances": xs[i:i + chunk].tolist()})
            assert r.status_code == 200
        want = judged + 1
        status = wait_until(c, lambda s, want=want: s["drift_windows_judged"] == want, f"window {start // window}")
    return status


def test_drift_criterion_needs_consecutive_alert_windows_and_stays_quiet_without_a_shift(life_bundles, tmp_path):
    rng = np.random.default_rng(7)
    same = rng.integers(0, 256, (1600, 28, 28)).astype(np.uint8)  # the reference's own distribution (uniform)
    with client_for([life_bundles["old"]], tmp_path, window=200) as c:
        status = send_windows(c, same, 200)
        # eight windows judged with no shift: no episode. (One window alone may false-alarm, about 1.5% of
        # windows, so a single drift_alert is allowed; two in a row, which an episode needs, about 0.02%.)
        assert status["drift_windows_judged"] == 8
        assert status["episode_reason"] is None and status["alert_windows"] <= 1
        kinds = [e["kind"] for e in c.get("/v1/events").json()["events"]]
        assert "episode" not in kinds and kinds.count("drift_alert") <= 1
        dark = (same[:400] // 4).astype(np.uint8)  # a darker camera: every window after this alerts
        status = send_windows(c, dark, 200)
        assert status["drift_windows_judged"] == 10 and status["alert_windows"] == 2
        episode = wait_for(c, "episode", 10)
        assert episode["reason"] == "drift" and episode["statistics"]["drift"]["windows"] == 2
        alert = [e for e in c.get("/v1/events").json()["events"] if e["kind"] == "drift_alert"][-1]
        assert alert["statistics"] and alert["rows_seen"] > 1600  # judged on a window of the shifted rows


def test_the_retrain_worker_answers_every_event_and_stops_on_sigterm(life_bundles, tmp_path):
    """run_retrain_worker (the compose file's worker): each pending event gets a result, the retrainer's own or
    an error when it died without one; SIGTERM stops it (as a container's PID 1 it would otherwise be ignored)."""
    import signal
    import subprocess

    from dlm_core.retrain import write_event

    root, script = tmp_path / "retrain", tmp_path / "retrainer.py"
    script.write_text(RETRAINER)
    x, y = np.zeros((3, 28, 28), np.float32), np.array([1, 2, 3])
    base = {"model": "life", "version": "1", "task": "image-classification", "bundle": str(life_bundles["old"]),
            "reason": "manual"}
    write_event(root, {**base, "id": "a"}, x, y)
    worker = str(Path(sys.executable).parent / "run_retrain_worker")
    cmd = f"{sys.executable} {script} {life_bundles['better']}"
    assert subprocess.run([worker, str(root), "--once", "--command", cmd], capture_output=True).returncode == 0
    assert json.loads((root / "results" / "a.json").read_text())["bundle"] == str(life_bundles["better"])
    write_event(root, {**base, "id": "b"}, x, y)
    r = subprocess.run([worker, str(root), "--once", "--command", f"{sys.executable} {script} fail"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "exited with code 3" in json.loads((root / "results" / "b.json").read_text())["error"]
    proc = subprocess.Popen([worker, str(root), "--poll", "0.1", "--command", cmd], stdout=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"watching")  # printed after the SIGTERM handler is installed
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 143
