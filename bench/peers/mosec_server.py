"""Mosec peer of run_serve for bench/p10_serving.py: the same bundle, request body and answer as run_serve's v1 route.

    DLM_PEER_BUNDLE=artifacts/fashion-cnn-demo/quick .bench-venv-peers/bin/python bench/peers/mosec_server.py \
        --port 8001 --timeout 10000

POST /v1/models/<bundle name>/predict {"input": <one item>} -> {"prediction": ..., "confidence": ..., ...,
"model", "version"}. One worker process with Mosec's own dynamic batching (at most 32 rows, waiting at most 5 ms);
the model is dlm_core's predictor (ONNX Runtime, 1 intra-op thread, no spinning), prepare() per request in
deserialize, run() per batch in forward, as run_serve does. Mosec's own flags (--port, --timeout, ...) pass through;
the bundle comes in DLM_PEER_BUNDLE (Mosec parses the command line itself) and the batching in DLM_PEER_MAX_BATCH /
DLM_PEER_MAX_WAIT_MS. Health: GET / (Mosec's).
"""

from __future__ import annotations

import os

import orjson
from mosec import Server, ValidationError, Worker

from dlm_core.io import read_json
from dlm_core.predictors import BadInput, load_predictor

BUNDLE = os.environ["DLM_PEER_BUNDLE"]
THREADS = int(os.environ.get("DLM_PEER_THREADS", "1"))


class Predict(Worker):
    def __init__(self):
        super().__init__()
        self.p = load_predictor(BUNDLE, threads=THREADS)
        self.p.self_check()  # as run_serve's registry does before it serves
        self.info = {"model": self.p.name, "version": self.p.version}

    def deserialize(self, data: bytes):
        try:
            body = orjson.loads(data)
            return self.p.prepare(body["input"])
        except (orjson.JSONDecodeError, KeyError, TypeError, BadInput) as err:
            raise ValidationError(f"{err.__class__.__name__}: {err}") from None

    def forward(self, rows: list) -> list:
        return [{**r, **self.info} for r in self.p.run(rows).results]

    def serialize(self, data) -> bytes:
        return orjson.dumps(data)


def main() -> None:
    name = read_json(os.path.join(BUNDLE, "manifest.json"))["name"]
    server = Server()
    server.append_worker(Predict, num=1, max_batch_size=int(os.environ.get("DLM_PEER_MAX_BATCH", "32")),
                         max_wait_time=int(os.environ.get("DLM_PEER_MAX_WAIT_MS", "5")),
                         route=f"/v1/models/{name}/predict")
    server.run()


if __name__ == "__main__":
    main()
