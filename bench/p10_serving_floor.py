"""p10_serving floor (issue #30): where a request's server CPU goes, stage by stage, and what each floor is.

Servers under the same open-loop load (run_loadtest, its own process, a fixed rate well below saturation), each
measured as the CPU of its process tree per request answered:

    asgi_floor   uvicorn (httptools + uvloop, as run_serve) with a 12-line raw ASGI app that reads the body
                 and answers fixed JSON: what any Python server on uvicorn pays before doing anything
    noop         run_serve --noop: our whole request path (hot path, service, batcher, metrics) without a model
    hot          run_serve BUNDLE: the same with the model (prepare, the batch's ONNX Runtime run, the answer)
    fastapi      run_serve BUNDLE --no-hot-path: the same routes through FastAPI (what the hot path saves)
    v2_json      run_serve BUNDLE, KServe v2 infer with the image as a JSON FP32 tensor (normalised, as v2 takes it)
    v2_binary    the same tensor with the binary tensor extension (tritonclient's default)

and, in one process with no HTTP, the per-request cost of each stage of `hot` (median of repeats): JSON parse
of the body, the 28x28 list -> array with its checks (`prepare`), the model per row at batch 32
(`predictor.run`: ORT + post-processing + drift features), and the answer's JSON.

    .venv/bin/python -P bench/p10_serving_floor.py [--bundle artifacts/fashion-cnn-demo/quick] [--rate 400]

JSON to bench/results/p10_serving_floor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np
import orjson

from dlm_core.benchmark import machine, write_result
from dlm_core.net import free_port, wait_http_ready

BIN = Path(sys.executable).parent
FLOOR_APP = '''
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    body = b'{"prediction":"Sandal","confidence":0.71,"model":"m","version":"1","latency_ms":0.1}'
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", http="httptools", loop="uvloop")
'''


def tree_cpu_s(pid: int) -> float:
    """utime + stime of a process and its descendants (seconds)."""
    pids, total = [pid], 0.0
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                pids += [int(c) for c in children]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def serve(label: str, bundle: Path, port: int, log: Path) -> subprocess.Popen:
    if label == "asgi_floor":
        cmd = [sys.executable, "-c", FLOOR_APP.replace("PORT", str(port))]
    else:
        cmd = [str(BIN / "run_serve"), "--port", str(port), "--max-batch-size", "32", "--max-delay-ms", "5"]
        cmd += ["--noop"] if label == "noop" else [str(bundle)]
        cmd += ["--no-hot-path"] if label == "fastapi" else []
    return subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def load(label: str, bundle: Path, body: dict, rate: float, seconds: float, tmp: Path) -> dict:
    port = free_port()
    proc = serve(label, bundle, port, tmp / f"{label}.log")
    try:
        ready = "/" if label == "asgi_floor" else "/v2/health/ready"
        wait_http_ready(f"http://127.0.0.1:{port}{ready}", 120, proc)
        name = bundle.parent.name
        path = "/v1/models/noop/predict" if label == "noop" else f"/v1/models/{name}/predict"
        body = {"input": 0} if label == "noop" else body
        out = tmp / label
        cmd = [str(BIN / "run_loadtest"), "--url", f"http://127.0.0.1:{port}", "--path", path, "--model", "m",
               "--rate", str(rate), "--duration", str(seconds), "--warmup", "1", "--out", str(out)]
        if label.startswith("v2"):
            cmd[cmd.index(path)] = f"/v2/models/{name}/infer"
            cmd += v2_body(bundle, body, label == "v2_binary", tmp)
        else:
            cmd += ["--body", json.dumps(body)]
        c0 = tree_cpu_s(proc.pid)
        subprocess.run(cmd, check=True, capture_output=True)
        c1 = tree_cpu_s(proc.pid)
        r = json.loads((out / "loadtest.json").read_text())
        answered = sum(r["status_codes"].values()) + r.get("warmup_requests", 0)
        return {"server_cpu_ms_per_request": round(1000 * (c1 - c0) / answered, 4), "answered": answered,
                "success_ratio": r["success_ratio"], "throughput": r["throughput"],
                "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"]}
    finally:
        proc.terminate()
        proc.wait(30)


def v2_body(bundle: Path, body: dict, binary: bool, tmp: Path) -> list[str]:
    """run_loadtest's flags for a v2 infer of the same image: a JSON tensor, or the binary tensor extension."""
    from dlm_core.predictors import load_predictor

    p = load_predictor(bundle)
    x = p.prepare(body["input"])[None].astype("<f4")
    spec = {"name": p.v2_inputs()[0]["name"], "shape": list(x.shape), "datatype": "FP32"}
    if not binary:
        return ["--body", json.dumps({"inputs": [{**spec, "data": x.ravel().tolist()}]})]
    head = json.dumps({"inputs": [{**spec, "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    (tmp / "v2.bin").write_bytes(head + x.tobytes())
    return ["--body-file", str(tmp / "v2.bin"), "--header", f"Inference-Header-Content-Length: {len(head)}"]


def stages(bundle: Path, body: dict) -> dict:
    """Per-request CPU of each stage of the hot path, in this process (ms, median of 5 repeats)."""
    from dlm_core.predictors import load_predictor

    p = load_predictor(bundle, threads=1)
    raw = orjson.dumps(body)
    row = p.prepare(body["input"])
    rows = [row] * 32
    out = p.run(rows)
    answer = {**out.results[0], "model": p.name, "version": p.version, "latency_ms": 1.234}

    def per_call(fn, n: int, per: int = 1) -> float:
        return round(1000 * float(np.median(timeit.repeat(fn, number=n, repeat=5))) / n / per, 4)

    return {"json_parse": per_call(lambda: orjson.loads(raw), 2000),
            "prepare_28x28_list": per_call(lambda: p.prepare(body["input"]), 1000),
            "model_run_per_row_at_32": per_call(lambda: p.run(rows), 100, 32),
            "model_run_batch_1": per_call(lambda: p.run([row]), 500),
            "answer_json": per_call(lambda: orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), 5000)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="artifacts/fashion-cnn-demo/quick")
    ap.add_argument("--rate", type=float, default=400.0, help="offered req/s, well below every saturation")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=2, help="repeats of every server, interleaved (median kept)")
    args = ap.parse_args()
    bundle = Path(args.bundle)
    if not (bundle / "manifest.json").exists():
        sys.exit(f"no bundle at {bundle}; make demo exports artifacts/fashion-cnn-demo/quick")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    img = np.random.default_rng(0).integers(0, 256, (28, 28)).tolist()
    body = {"input": img}
    labels = ["asgi_floor", "noop", "hot", "fastapi", "v2_json", "v2_binary"]
    runs: dict[str, list[dict]] = {k: [] for k in labels}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for label in labels:
                runs[label].append(load(label, bundle, body, args.rate, args.seconds, Path(tmp)))
                print(f"round {r} {label}: {runs[label][-1]}", flush=True)
    cpu = {k: float(np.median([x["server_cpu_ms_per_request"] for x in v])) for k, v in runs.items()}
    st = stages(bundle, body)
    result = {"bench": "p10_serving floor: server CPU per request by stage, at a fixed offered rate",
              "machine": machine(), "bundle": str(bundle), "offered_rate": args.rate,
              "ours": {"hot_path_cpu_ms_per_request": cpu["hot"]},
              "peer": {"fastapi_routes_cpu_ms_per_request": cpu["fastapi"]},
              "ratio": cpu["hot"] / cpu["fastapi"],
              "goal": "ratio = hot path / FastAPI routes CPU per request (lower is better); the floors say what a "
                      "Python server on uvicorn cannot go below",
              "server_cpu_ms_per_request": cpu, "runs": runs, "stages_ms_per_request_in_process": st,
              "derived": {"uvicorn_http_floor": cpu["asgi_floor"],
                          "our_path_without_model": round(cpu["noop"] - cpu["asgi_floor"], 4),
                          "model_work": round(cpu["hot"] - cpu["noop"], 4),
                          "hot_path_saves": round(cpu["fastapi"] - cpu["hot"], 4)}}
    write_result("p10_serving_floor", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
