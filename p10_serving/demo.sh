#!/usr/bin/env bash
# p10 demo (run from the repo root, after the other demos exported their *-demo bundles): start run_serve on
# them, send one request per model (simple API and KServe v2), run a short open-loop load test, print the
# batching figures from /metrics, then stop the server.
set -euo pipefail
ART="${DLM_ARTIFACTS:-artifacts}"
PORT="${DLM_DEMO_PORT:-8731}"
URL="http://127.0.0.1:$PORT"
BUNDLES=()
for name in fashion-cnn-demo translator-en-es-demo package-search-demo package-section-demo fashion-anomaly-demo; do
  if [ -d "$ART/$name/quick" ]; then BUNDLES+=("$ART/$name/quick"); else echo "note: $ART/$name/quick missing, not served"; fi
done
[ ${#BUNDLES[@]} -gt 0 ] || { echo "error: no demo bundles under $ART; run the other demos first" >&2; exit 2; }
log="$(mktemp)"
run_serve "${BUNDLES[@]}" --port "$PORT" > "$log" 2>&1 &
server=$!
trap 'kill -INT $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
PY_BIN="$(dirname "$(command -v run_serve)")/python"
"$PY_BIN" - "$URL" <<'PY'
import json, sys
import httpx
from dlm_core.errors import DlmError
from dlm_core.net import wait_http_ready
url = sys.argv[1]
try:  # until ready (every bundle verified and self-checked)
    wait_http_ready(f"{url}/v2/health/ready", timeout=120)
except DlmError as err:
    sys.exit(f"server did not become ready: {err}")
from dlm_core.data import load_dataset
ds = load_dataset("fashion-mnist")
examples = {"image-classification": ds.test.x[0].tolist(), "anomaly-detection": ds.test.x[0].tolist(),
            "translation": "In the beginning God created the heavens and the earth.",
            "text-retrieval": {"query": "play chess against the computer", "k": 3},
            "text-classification": "a library for parsing and writing JSON documents in Python"}
models = httpx.get(f"{url}/v1/models").json()["models"]
for m in models:
    body = {"input": examples[m["task"]]}
    r = httpx.post(f"{url}/v1/models/{m['name']}/predict", json=body, timeout=30)
    out = r.json()
    if "results" in out:
        out["results"] = [{k: h[k] for k in ("rank", "id", "score")} for h in out["results"]]
    out.pop("top_k", None)
    print(f"POST /v1/models/{m['name']}/predict -> {r.status_code} {json.dumps(out)[:300]}")
r = httpx.post(f"{url}/predict", json={"input": "sample text"}, timeout=30)
print(f'POST /predict {{"input": "sample text"}} -> {r.status_code} {r.text[:200]}')
img = [m["name"] for m in models if m["task"] == "image-classification"]
if img:
    v2 = {"id": "demo-1", "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                      "data": [0.0] * 784}]}
    r = httpx.post(f"{url}/v2/models/{img[0]}/infer", json=v2, timeout=30)
    print(f"POST /v2/models/{img[0]}/infer -> {r.status_code} outputs "
          f"{[(o['name'], o['shape']) for o in r.json().get('outputs', [])]} id {r.json().get('id')}")
PY
echo "-- run_loadtest: 3 s at 100 requests/s on the image classifier"
run_loadtest --url "$URL" --model fashion-cnn-demo --rate 100 --duration 3 --warmup 1 || true
echo "-- /metrics: rows per execution (mean batch size) under that load"
"$PY_BIN" - "$URL" <<'PY'
import sys
import httpx
from prometheus_client.parser import text_string_to_metric_families
rows = execs = 0.0
for fam in text_string_to_metric_families(httpx.get(f"{sys.argv[1]}/metrics").text):
    for s in fam.samples:
        if s.labels.get("model") == "fashion-cnn-demo" and s.name.endswith("inference_rows_total"):
            rows += s.value
        if s.labels.get("model") == "fashion-cnn-demo" and s.name.endswith("inference_executions_total"):
            execs += s.value
print(f"fashion-cnn-demo: {rows:.0f} rows in {execs:.0f} executions, mean batch size {rows / max(execs, 1):.2f}")
# the quick-vs-default line of make demo: this short run beside the bench's figures (the serving headline)
import json
from pathlib import Path
b = json.loads(Path("bench/results/p10_serving.json").read_text())
print(f"p10_serving quick (3 s at 100 req/s): mean batch size {rows / max(execs, 1):.2f} | default (python "
      f"bench/p10_serving.py, bench/results/p10_serving.json): batched {b['ours']['batched_saturation_rps']:.0f} "
      f"req/s vs unbatched {b['peer']['unbatched_saturation_rps']:.0f} ({b['ratio']:.2f}x), p99 "
      f"{b['ours']['p99_ms_at_half_unbatched_saturation']:.1f} ms at {b['ours']['offered_rps_at_half']:.0f} req/s")
PY
echo "-- also: $URL/dashboard (live charts) and $URL/docs while a server runs; make fullstack runs the whole"
echo "   train -> serve -> drift -> retrain -> gated swap loop (about 4 min on an idle 2-core machine)"
