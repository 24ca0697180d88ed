"""The console scripts as processes: no torch in the server, a quick --help, a tampered bundle refused in
one line, and a live run_serve on 127.0.0.1 loaded by run_loadtest for a couple of seconds."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlm_core.bundle import MANIFEST
from dlm_core.data.registry import sha256_file
from dlm_core.net import free_port
from p10_serving.tools.loadtest import check_loopback, report

BIN = Path(sys.executable).parent


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def test_the_server_imports_no_torch_and_no_tools():
    code = ("import p10_serving.app, p10_serving.cli, p10_serving.registry, sys; "
            "bad = {m.split('.')[0] for m in sys.modules} & {'torch', 'matplotlib', 'httpx'}; assert not bad, bad")
    r = run([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom p10_serving.cli import serve_main\nfrom p10_serving.tools.loadtest import main\n"
            "for main in (serve_main, main):\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "heavy = {'fastapi', 'uvicorn', 'onnxruntime', 'httpx', 'torch', 'matplotlib'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    r = run([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert "--max-batch-size" in r.stdout and "--rate" in r.stdout


def tamper_checksum(path: Path):
    with open(path / "model.onnx" if (path / "model.onnx").exists() else next(path.glob("*.onnx")), "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\x00" * 8)


def tamper_reference(path: Path):
    """Change torch's reference outputs and re-seal the manifest: checksums pass, the self-check must not."""
    ref = dict(np.load(path / "reference.npz"))
    key = next(k for k in ref if ".out." in k)
    ref[key] = ref[key] + 1.0
    np.savez(path / "reference.npz", **ref)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"]["reference.npz"] = sha256_file(path / "reference.npz")
    (path / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("tamper,words", [(tamper_checksum, "sha256 mismatch"), (tamper_reference, "self-check")])
def test_a_tampered_bundle_is_refused_in_one_line(bundles, tmp_path, tamper, words):
    bad = tmp_path / "img" / "1"
    shutil.copytree(bundles["img"], bad)
    tamper(bad)
    r = run([str(BIN / "run_serve"), str(bundles["txt"]), str(bad), "--port", "1"])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: refusing bundle {bad}") and words in lines[0], r.stderr
    assert "serving" not in r.stdout


def test_serve_refuses_bad_flags_and_an_empty_artifacts_folder(tmp_path):
    r = run([str(BIN / "run_serve"), "--all", "--artifacts", str(tmp_path)])
    assert r.returncode == 2 and "no bundle under" in r.stderr
    r = run([str(BIN / "run_serve")])
    assert r.returncode == 2 and "--all" in r.stderr
    for flags, words in [(["--max-batch-size", "0"], "must be positive"), (["--drift-min-rows", "900"], "drift"),
                         (["--retrain-command", "x"], "needs --retrain-dir"), (["--gate-alpha", "2"], "gate-alpha"),
                         (["--max-delay-ms", "x"], "invalid float")]:
        r = run([str(BIN / "run_serve"), "--noop", *flags])
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, (flags, r.stderr)


def test_loadtest_is_loopback_only():
    check_loopback("http://127.0.0.1:8000")
    check_loopback("http://localhost:8000")
    from dlm_core.errors import DlmError

    with pytest.raises(DlmError, match="loopback"):
        check_loopback("http://10.1.2.3:8000")
    r = run([str(BIN / "run_loadtest"), "--url", "http://192.168.1.1:8000"])
    assert r.returncode == 2 and "loopback" in r.stderr


def test_loadtest_report_counts_from_the_scheduled_time():
    # 1 s warm-up, then 4 measured requests at 2/s: one error, one slow
    samples = [(0.5, 1.0, "200", False), (1.0, 10.0, "200", True), (1.5, 20.0, "200", True),
               (2.0, 1000.0, "200", True), (2.5, 5.0, "503", True)]
    r = report(samples, rate=2.0, warmup=1.0, duration=2.0, finished=3.5)
    assert r["requests"] == 4 and r["warmup_requests"] == 1
    assert r["success_ratio"] == 0.75 and r["status_codes"] == {"200": 3, "503": 1}
    assert r["offered_rate"] == pytest.approx(2.0)
    assert r["latency_ms"]["max"] == 1000.0 and r["latency_ms"]["p50"] == pytest.approx(15.0)
    assert r["latency_ms_success"]["p50"] == 20.0


def test_live_server_under_an_open_loop_load(bundles, tmp_path):
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(BIN / "run_serve"), str(bundles["img"]), str(bundles["txt"]), "--port", str(port),
                               "--max-delay-ms", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        r = run([str(BIN / "run_loadtest"), "--url", url, "--model", "txt", "--rate", "40", "--duration", "2",
                 "--warmup", "0.5", "--wait-ready", "90", "--out", str(tmp_path)])
        assert r.returncode == 0, r.stderr
        result = json.loads((tmp_path / "loadtest.json").read_text())
        assert result["requests"] == 80 and result["success_ratio"] == 1.0
        assert result["status_codes"] == {"200": 80}
        assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]
        assert (tmp_path / "loadtest.png").stat().st_size > 1000
        # KServe v2 binary tensors through run_loadtest: a raw body and its Inference-Header-Content-Length
        head = json.dumps({"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 784 * 4}}]}).encode()
        (tmp_path / "v2.bin").write_bytes(head + np.zeros(784, "<f4").tobytes())
        r = run([str(BIN / "run_loadtest"), "--url", url, "--path", "/v2/models/img/infer", "--model", "img",
                 "--body-file", str(tmp_path / "v2.bin"), "--header", f"Inference-Header-Content-Length: {len(head)}",
                 "--rate", "20", "--duration", "1", "--warmup", "0", "--out", str(tmp_path / "v2")])
        assert r.returncode == 0, r.stderr
        assert json.loads((tmp_path / "v2" / "loadtest.json").read_text())["status_codes"] == {"200": 20}
        one = httpx.post(f"{url}/v1/models/img/predict", json={"input": [[0] * 28] * 28}, timeout=30)
        assert one.status_code == 200 and one.json()["model"] == "img"
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert 'dlm_requests_total{code="200",model="txt"}' in metrics
    finally:
        server.send_signal(signal.SIGINT)  # graceful: uvicorn drains, the lifespan stops the batchers
        try:
            out, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            out, err = server.communicate()
    assert server.returncode == 0, err
    assert "serving 2 model(s)" in out and "Traceback" not in err
