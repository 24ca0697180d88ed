"""The dashboard in a real browser: headless Chromium loads /dashboard from a live run_serve under load, runs
the page's JavaScript (uPlot, vendored) against /v1/dashboard/data, and the page's own state says how many
points each chart drew. Chromium comes from Debian (`make test` installs it); where it is missing, the test is
skipped and says so."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from dlm_core.errors import DlmError
from dlm_core.net import free_port, wait_http_ready
from p10_serving.tools.chromium import find_chromium, run_chromium

CHROMIUM = find_chromium()


def chromium(url: str, profile: Path, *extra: str) -> str:
    return run_chromium(url, profile, *extra, budget_ms=6000).stdout


@pytest.fixture
def live_server(bundles, tmp_path):
    port = free_port()
    exe = Path(sys.executable).parent / "run_serve"
    proc = subprocess.Popen([str(exe), str(bundles["img"]), str(bundles["anom"]), "--port", str(port),
                             "--drift-window", "60", "--drift-min-rows", "40", "--drift-every", "20",
                             "--drift-interval-s", "0"],
                            stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http_ready(f"{base}/v2/health/ready", 60, proc)
        except DlmError as err:
            raise AssertionError(f"{err}\n{(tmp_path / 'serve.log').read_text()}") from None
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs Debian's chromium)")
def test_dashboard_charts_receive_data_in_a_real_browser(live_server, tmp_path):
    rng = np.random.default_rng(0)
    with httpx.Client(base_url=live_server, timeout=10) as c:
        t0, sent, bad = time.time(), 0, 0
        while time.time() - t0 < 3.5:  # a few seconds of traffic: predictions, feedback, and some 4xx
            imgs = rng.integers(0, 256, (8, 28, 28)).tolist()
            assert c.post("/v1/models/img/predict", json={"instances": imgs}).status_code == 200
            assert c.post("/v1/models/anom/predict", json={"instances": imgs}).status_code == 200
            assert c.post("/v1/models/img/feedback", json={"instances": imgs, "labels": [1] * 8}).status_code == 200
            assert c.post("/v1/models/img/predict", json={"input": "not an image"}).status_code == 400
            sent, bad = sent + 3, bad + 1
        # the per-second points add up to the responses sent (once the sampler has passed the last of them)
        for _ in range(100):
            data = c.get("/v1/dashboard/data").json()
            img = data["models"]["img"]
            if round(sum(p["rps"] for p in img) * data["interval_s"]) == sent:
                break
            time.sleep(0.1)
    assert round(sum(p["rps"] for p in img) * data["interval_s"]) == sent
    assert round(sum(p["errors"] for p in img) * data["interval_s"]) == bad > 0
    assert any(p["p99"] is not None and p["p99"] > 0 for p in img)
    html = chromium(f"{live_server}/dashboard", tmp_path / "profile", "--dump-dom")
    m = re.search(r'<pre id="dash-state"[^>]*>(.*?)</pre>', html, re.S)
    assert m, html[:2000]
    state = json.loads(m.group(1))
    assert state["refreshes"] >= 1
    for model in ("img", "anom"):
        assert state["points"][model] >= 3
        charts = state["charts"][model]
        assert charts["traffic"] > 0 and charts["latency"] > 0 and charts["batch"] > 0 and charts["drift"] > 0, charts
    assert state["charts"]["img"]["accuracy"] > 0  # the classifier's live accuracy from the feedback
    shot = tmp_path / "dashboard.png"
    chromium(f"{live_server}/dashboard", tmp_path / "profile2", "--window-size=1600,900", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000
