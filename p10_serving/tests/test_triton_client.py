"""NVIDIA's Triton HTTP client (tritonclient[http], a KServe v2 / Open Inference Protocol client) against a
live run_serve app on 127.0.0.1: health, readiness, metadata, and infer with JSON tensors (image and text),
and with binary tensors (the extension, tritonclient's default), its answers equal to the predictor's own, and a
bad binary request refused with a 400 that says why."""

import threading
import time

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
import uvicorn
from tritonclient.utils import InferenceServerException

from dlm_core.net import free_port
from p10_serving.app import create_app


@pytest.fixture(scope="module")
def live(predictors):
    port = free_port()
    app = create_app([predictors["img"], predictors["txt"]])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    client.url = f"http://127.0.0.1:{port}"
    yield client
    client.close()
    server.should_exit = True
    thread.join(30)


def test_health_readiness_and_metadata(live, predictors):
    assert live.is_server_live() and live.is_server_ready()
    assert live.is_model_ready("img") and live.is_model_ready("txt", model_version="1")
    assert live.get_server_metadata()["name"] == "dlm-serving"
    meta = live.get_model_metadata("img")
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert [o["name"] for o in meta["outputs"]] == [o["name"] for o in predictors["img"].v2_outputs()]
    with pytest.raises(InferenceServerException, match="no model named"):
        live.get_model_metadata("nope")


def test_infer_image_tensors_match_the_predictor(live, predictors):
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    tensor = triton.InferInput("image", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    out = live.infer("img", [tensor], outputs=[triton.InferRequestedOutput("logits", binary_data=False)],
                     request_id="req-7")
    assert out.get_response()["id"] == "req-7" and out.get_response()["model_name"] == "img"
    assert [o["name"] for o in out.get_response()["outputs"]] == ["logits"]
    p = predictors["img"]
    expected = p.run(p.rows_from_v2({"image": x})).tensors["logits"]
    np.testing.assert_allclose(out.as_numpy("logits"), expected, rtol=1e-5, atol=1e-6)


def test_infer_text_bytes(live, predictors):
    texts = np.array(["a library for parsing JSON", "a chess game"], dtype=object)
    tensor = triton.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(texts, binary_data=False)
    out = live.infer("txt", [tensor], model_version="1",
                     outputs=[triton.InferRequestedOutput("label", binary_data=False)])
    p = predictors["txt"]
    expected = p.run(p.rows_from_v2({"text": texts})).results
    assert list(out.as_numpy("label")) == [r["prediction"] for r in expected]


def test_binary_tensors_in_and_out(live, predictors):
    p = predictors["img"]
    x = np.stack([p.prepare(np.full((28, 28), v).tolist()) for v in (0, 90, 200)]).astype(np.float32)
    tensor = triton.InferInput("image", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)  # binary_data=True by default: the extension
    out = live.infer("img", [tensor])  # no outputs named: tritonclient asks for every output in binary
    np.testing.assert_allclose(out.as_numpy("logits"), p.run(list(x)).tensors["logits"], atol=1e-5)
    assert out.as_numpy("embedding").shape[0] == 3
    texts = np.array(["json parser library", "game server"], dtype=object)
    tensor = triton.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(texts)
    out = live.infer("txt", [tensor], outputs=[triton.InferRequestedOutput("label", binary_data=True),
                                               triton.InferRequestedOutput("probabilities", binary_data=False)])
    expected = predictors["txt"].run(predictors["txt"].rows_from_v2({"text": texts}))
    assert [v.decode() for v in out.as_numpy("label")] == [r["prediction"] for r in expected.results]
    np.testing.assert_allclose(out.as_numpy("probabilities"), expected.tensors["probabilities"], atol=1e-5)


def test_a_bad_binary_request_says_why(live):
    head = orjson.dumps({"inputs": [{"name": "image", "shape": [2, 1, 28, 28], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 2 * 784 * 4}}]})
    body = head + np.zeros(784, np.float32).tobytes()  # one image of bytes for a declared two
    r = httpx.post(f"{live.url}/v2/models/img/infer", content=body,
                   headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 400 and "image" in r.json()["error"], r.text
