"""LitServe peer of run_serve for bench/p10_serving.py: the same bundle, request body and answer as run_serve's v1
route.

    .bench-venv-peers/bin/python bench/peers/litserve_server.py artifacts/fashion-cnn-demo/quick --port 8002

POST /v1/models/<bundle name>/predict {"input": <one item>} -> {"prediction": ..., "confidence": ..., ...,
"model", "version"}. One inference worker on the CPU (workers_per_device=1, one API server process) with
LitServe's own dynamic batching (max_batch_size 32, batch_timeout 5 ms); the model is dlm_core's predictor (ONNX
Runtime, 1 intra-op thread, no spinning), prepare() per request in decode_request, run() per batch in predict, as
run_serve does. Health: GET /health (200 once the worker has set up).
"""

from __future__ import annotations

import argparse

import litserve as ls
from fastapi import HTTPException

from dlm_core.io import read_json
from dlm_core.predictors import BadInput, load_predictor


class Predict(ls.LitAPI):
    def __init__(self, bundle: str, threads: int, **kwargs):
        super().__init__(**kwargs)
        self.bundle, self.threads = bundle, threads

    def setup(self, device):
        self.p = load_predictor(self.bundle, threads=self.threads)
        self.p.self_check()  # as run_serve's registry does before it serves
        self.info = {"model": self.p.name, "version": self.p.version}

    def decode_request(self, request):
        try:
            return self.p.prepare(request["input"])
        except (KeyError, TypeError, BadInput) as err:
            raise HTTPException(422, f"{err.__class__.__name__}: {err}") from None

    def batch(self, rows):
        return list(rows)

    def predict(self, rows):
        return self.p.run(rows).results

    def unbatch(self, results):
        return results

    def encode_response(self, result):
        return {**result, **self.info}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--port", type=int, default=8002)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--batch-timeout-ms", type=float, default=5.0)
    ap.add_argument("--fast-queue", action="store_true", help="LitServe's ZeroMQ queue instead of multiprocessing's")
    args = ap.parse_args()
    name = read_json(f"{args.bundle}/manifest.json")["name"]
    api = Predict(args.bundle, args.threads, max_batch_size=args.max_batch_size,
                  batch_timeout=args.batch_timeout_ms / 1000, api_path=f"/v1/models/{name}/predict")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=10, fast_queue=args.fast_queue)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning",
               generate_client_file=False)


if __name__ == "__main__":
    main()
