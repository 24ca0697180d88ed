"""What the store gives the running server: prediction ids that feedback can name, state that a restart resumes
(the swapped-in version, the rollback target, the event history), rejected and rolled-back versions that --all
never picks again, and the bearer-token checks on the routes that change state."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dlm_core.predictors import load_predictor
from dlm_core.testing import toy_image_bundle
from p10_serving.app import ServeConfig, create_app
from p10_serving.http.auth import Auth, Secret
from p10_serving.registry import all_bundles
from p10_serving.store import Store

TOKEN, KEY = "admin-" + "a" * 26, "key-" + "b" * 28


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    root = tmp_path_factory.mktemp("durable")
    return root, toy_image_bundle(root, name="life", version="1"), toy_image_bundle(root, name="life", version="2",
                                                                                     weights_seed=1)


def client(paths, state, auth=None, **config) -> TestClient:
    return TestClient(create_app([load_predictor(p) for p in paths], ServeConfig(**config), Store(state), auth))


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28)).astype(np.uint8)


def test_feedback_names_a_prediction_and_the_model_is_not_run_again(two, tmp_path, monkeypatch):
    _, old, _ = two
    xs = images(6)
    with client([old], tmp_path / "state") as c:
        one = c.post("/v1/models/life/predict", json={"input": xs[0].tolist()}).json()
        many = c.post("/v1/models/life/predict", json={"instances": xs[1:].tolist()}).json()["predictions"]
        ids = [one["prediction_id"]] + [p["prediction_id"] for p in many]
        assert len(set(ids)) == 6 and all(len(i) == 32 for i in ids)
        p = c.app.state.ctx.repo.get("life").predictor
        calls = []
        monkeypatch.setattr(type(p), "run", lambda self, rows: calls.append(rows) or pytest.fail("ran the model"))
        right = one["prediction"]
        r = c.post("/v1/models/life/feedback", json={"prediction_id": ids[0], "label": right})  # still pending
        assert r.status_code == 200 and r.json()["correct"] == 1, r.text
        time.sleep(0.7)  # the log has been written
        wrong = [f"class_{(int(p['prediction'][6:]) + 1) % 10}" for p in many[:3]]
        r = c.post("/v1/models/life/feedback", json={"prediction_ids": ids[1:4], "labels": wrong})
        assert r.status_code == 200 and r.json()["correct"] == 0 and r.json()["feedback_rows"] == 4, r.text
        assert not calls
        for body, status, says in [({"prediction_id": ids[1], "label": 0}, 409, "already has a label"),
                                   ({"prediction_id": "f" * 32, "label": 0}, 404, "not in the prediction log"),
                                   ({"prediction_id": ids[5]}, 400, "need as many labels"),
                                   ({"prediction_id": ids[5], "input": xs[0].tolist(), "label": 1}, 400, "one of"),
                                   ({"prediction_ids": [ids[5], 7], "labels": [1, 2]}, 400, "prediction_ids[1]")]:
            r = c.post("/v1/models/life/feedback", json=body)
            assert r.status_code == status and says in r.json()["error"], (body, r.json())
    with client([old], tmp_path / "state") as c:  # a restart: the ids of the answers before it still work
        r = c.post("/v1/models/life/feedback", json={"prediction_id": ids[5], "label": many[4]["prediction"]})
        assert r.status_code == 200 and r.json()["feedback_rows"] == 5
        assert c.get("/v1/models/life/lifecycle").json()["feedback_rows"] == 5


def test_a_restart_serves_the_swapped_in_version_and_a_rollback_survives_too(two, tmp_path):
    root, old, new = two
    state = tmp_path / "state"
    with client([old], state) as c:
        life = c.app.state.ctx.life
        c.portal.call(lambda: life.swap(c.app.state.ctx.repo.get("life"), load_predictor(new), id="e1", gate={}))
        assert c.get("/v1/models/life").json()["version"] == "2"
    with client([old], state) as c:  # started on the old bundle's path only: the store says 2, which is loaded
        assert c.get("/v1/models/life").json()["version"] == "2"
        status = c.get("/v1/models/life/lifecycle").json()
        assert status["previous"] == "1" and status["durable"] is True
        kinds = [e["kind"] for e in c.get("/v1/events").json()["events"]]
        assert kinds == ["swap", "resumed"]
        assert c.post("/v1/models/life/rollback").json()["version"] == "1"
    with client([old, new], state) as c:
        assert c.get("/v1/models/life").json()["version"] == "1"  # not the newest folder: the rolled-back one
        assert [e["kind"] for e in c.get("/v1/events").json()["events"]] == ["swap", "resumed", "rollback", "resumed"]
    # run_serve --all picks neither a rolled-back nor a rejected version
    marks = {k for k, v in Store(state).version_marks().items() if v in ("rejected", "rolled_back")}
    assert marks == {("life", "2")}
    assert [p.name for p in all_bundles(root)] == ["2"] and [p.name for p in all_bundles(root, marks)] == ["1"]


def test_a_changed_bundle_is_not_served_after_a_restart(two, tmp_path):
    root, old, _ = two
    copy = toy_image_bundle(tmp_path / "artifacts", name="life", version="2", weights_seed=1)
    state = tmp_path / "state"
    with client([old], state) as c:
        ctx = c.app.state.ctx
        c.portal.call(lambda: ctx.life.swap(ctx.repo.get("life"), load_predictor(copy), gate={}))
    (copy / "model.onnx").write_bytes(b"tampered")
    with client([old], state) as c:
        assert c.get("/v1/models/life").json()["version"] == "1"
        resumed = c.get("/v1/events").json()["events"][-1]
        assert resumed["kind"] == "resumed" and "serving version 2" in resumed["problems"][0]


def test_state_changing_routes_need_the_admin_token_and_predict_the_api_key(two, tmp_path):
    _, old, _ = two
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    auth = Auth(Secret("admin token", token_file), Secret("API key", value=KEY))
    x = images(1)[0].tolist()
    with client([old], tmp_path / "state", auth=auth) as c:
        bearer = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
        for method, path, body, ok in [("post", "/v1/models/life/feedback", {"input": x, "label": 1}, 200),
                                       ("post", "/v1/models/life/retrain", None, 409),
                                       ("post", "/v1/models/life/rollback", None, 409),
                                       ("get", "/v1/models/life/drift?dump=1", None, 400)]:
            def call(h, method=method, path=path, body=body):
                return getattr(c, method)(path, headers=h, **({"json": body} if body else {}))

            r = call({})
            assert r.status_code == 401 and "admin token" in r.json()["error"], (path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert call(bearer("x" * 32)).status_code == 403
            assert call({"Authorization": f"Basic {TOKEN}"}).status_code == 401
            assert call(bearer(TOKEN)).status_code == ok, path
        assert c.get("/v1/models/life/drift").status_code == 200 and c.get("/v1/events").status_code == 200
        for path, body in [("/v1/models/life/predict", {"input": x}),
                           ("/v2/models/life/infer", {"inputs": [{"name": "image", "datatype": "FP32",
                                                                  "shape": [1, 1, 28, 28], "data": x}]})]:
            assert c.post(path, json=body).status_code == 401
            assert c.post(path, json=body, headers={"X-API-Key": "nope"}).status_code == 403
            assert c.post(path, json=body, headers={"X-API-Key": KEY}).status_code == 200
            assert c.post(path, json=body, headers=bearer(TOKEN)).status_code == 200
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert set(schemes) == {"admin token", "API key"}
        # a rotation: the file gets the new token; the old one is refused within a second or so, no restart
        token_file.write_text("new-" + "c" * 28 + "\n")
        time.sleep(1.1)
        assert c.post("/v1/models/life/rollback", headers=bearer(TOKEN)).status_code == 403
        assert c.post("/v1/models/life/rollback", headers=bearer("new-" + "c" * 28)).status_code == 409


def test_run_serve_refuses_an_open_admin_on_a_public_address(two, tmp_path):
    _, old, _ = two
    exe = Path(sys.executable).parent / "run_serve"
    r = subprocess.run([str(exe), str(old), "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "no admin token" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "short").write_text("abc\n")
    r = subprocess.run([str(exe), str(old), "--admin-token-file", str(tmp_path / "short")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "shorter than 16" in r.stderr
    r = subprocess.run([str(exe), str(old)], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "DLM_ADMIN_TOKEN": "short"})
    assert r.returncode == 2 and "from the environment is shorter than 16" in r.stderr


def test_a_sigkilled_server_keeps_every_acknowledged_feedback_row_once(two, tmp_path):
    """Feedback by prediction id streams in from a client thread; the server is SIGKILLed mid-stream and started
    again on the same state dir: every row acknowledged with a 2xx is in the store exactly once."""
    import signal
    import threading

    import httpx

    from dlm_core.net import free_port, wait_http_ready

    _, old, _ = two
    exe, state = Path(sys.executable).parent / "run_serve", tmp_path / "state"

    def start():
        port = free_port()
        proc = subprocess.Popen([str(exe), str(old), "--port", str(port), "--state-dir", str(state)],
                                stdout=open(tmp_path / "serve.log", "ab"), stderr=subprocess.STDOUT)
        wait_http_ready(f"http://127.0.0.1:{port}/v2/health/ready", timeout=60, proc=proc)
        return proc, f"http://127.0.0.1:{port}"

    proc, base = start()
    xs = images(200, seed=3)
    with httpx.Client(base_url=base, timeout=5) as c:
        ids = [c.post("/v1/models/life/predict", json={"input": x.tolist()}).json()["prediction_id"] for x in xs]
    time.sleep(0.7)  # written to the log
    acked, stop = [], threading.Event()

    def label():
        with httpx.Client(base_url=base, timeout=5) as c:
            for i in range(0, len(ids), 5):
                if stop.is_set():
                    return
                try:
                    r = c.post("/v1/models/life/feedback", json={"prediction_ids": ids[i:i + 5], "labels": [1] * 5})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked.extend(ids[i:i + 5])

    sender = threading.Thread(target=label)
    sender.start()
    while len(acked) < 50 and sender.is_alive():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    sender.join()
    assert 50 <= len(acked) < len(ids), "the kill must land mid-stream"
    proc, base = start()
    try:
        with Store(state).tx() as cur:
            stored = [r[0] for r in cur.all("SELECT prediction_id FROM feedback")]
        assert set(acked) <= set(stored) and len(stored) == len(set(stored))
        assert len(stored) - len(acked) <= 5  # at most the one batch in flight when the kill landed
        with httpx.Client(base_url=base, timeout=5) as c:
            assert c.get("/v1/models/life/lifecycle").json()["feedback_rows"] == len(stored)
            rest = [i for i in ids if i not in stored]
            r = c.post("/v1/models/life/feedback", json={"prediction_ids": rest, "labels": [1] * len(rest)})
            assert r.status_code == 200 and r.json()["feedback_rows"] == len(ids)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_versions_beyond_the_serving_one_and_the_rollback_target_are_unloaded_after_the_grace(two, tmp_path):
    from p10_serving.lifecycle import RetrainPolicy

    root, old, new = two
    third = toy_image_bundle(tmp_path / "more", name="life", version="3", weights_seed=2)
    config = ServeConfig(retrain=RetrainPolicy(unload_grace_s=0.3))
    with TestClient(create_app([load_predictor(old)], config, Store(tmp_path / "state"))) as c:
        ctx = c.app.state.ctx
        for bundle in (new, third):
            c.portal.call(lambda b=bundle: ctx.life.swap(ctx.repo.get("life"), load_predictor(b), gate={}))
        loaded = lambda: sorted(m["version"] for m in c.get("/v1/models").json()["models"])  # noqa: E731
        assert loaded() == ["1", "2", "3"]  # within the grace, requests routed to 1 still finish
        time.sleep(1.0)
        assert loaded() == ["2", "3"]
        assert c.post("/v2/models/life/versions/1/infer", json={}).status_code == 404
        assert [e["version"] for e in c.get("/v1/events").json()["events"] if e["kind"] == "unloaded"] == ["1"]
        assert c.post("/v1/models/life/rollback").json()["version"] == "2"


def test_v2_answers_carry_prediction_ids_that_feedback_can_name(two, tmp_path):
    _, old, _ = two
    xs = images(3, seed=5)
    norm = ((xs / 255.0 - 0.5) / 0.5).astype(np.float32)[:, None]  # the graph's own tensor
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [3, 1, 28, 28], "data": norm.ravel().tolist()}]}
    with client([old], tmp_path / "state") as c:
        r = c.post("/v2/models/life/infer", json=body)
        assert r.status_code == 200, r.text
        ids = r.json()["parameters"]["prediction_ids"]
        v1 = [c.post("/v1/models/life/predict", json={"input": x.tolist()}).json()["prediction"] for x in xs]
        r = c.post("/v1/models/life/feedback", json={"prediction_ids": ids, "labels": v1})
        assert r.status_code == 200 and r.json()["correct"] == 3, r.text  # the same answers as v1's
