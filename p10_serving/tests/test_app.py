"""The app through FastAPI's TestClient on real toy bundles: every route, every 4xx, the KServe v2 bodies
against the protocol's published examples, and batch sizes above 1 in /metrics under concurrent load."""

import base64
import io
import json
import math
import re
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from p10_serving.app import ServeConfig, create_app

IMAGE = np.random.default_rng(0).integers(0, 256, (28, 28)).tolist()


@pytest.fixture(scope="module")
def client(predictors):
    config = ServeConfig(max_body_bytes=200_000, max_request_rows=16)
    with TestClient(create_app(list(predictors.values()), config)) as c:
        yield c


def png_b64(pixels) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}{{(.*)}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


# ------------------------------------------------------------------------------------------------ v1
def test_v1_image_classifier_takes_an_array_or_a_png(client, predictors):
    a = client.post("/v1/models/img/predict", json={"input": IMAGE})
    b = client.post("/v1/models/img/predict", json={"input": png_b64(IMAGE)})
    assert a.status_code == b.status_code == 200
    a, b = a.json(), b.json()
    assert a["prediction"] == b["prediction"] == predictors["img"].predict([IMAGE])[0]["prediction"]
    assert 0 < a["confidence"] <= 1 and a["model"] == "img" and a["version"] == "1" and a["latency_ms"] > 0


def test_v1_each_task_answers_with_its_result(client):
    anom = client.post("/v1/models/anom/predict", json={"input": IMAGE}).json()
    assert {"score", "threshold", "is_anomaly", "prediction"} <= set(anom)
    hits = client.post("/v1/models/search/predict", json={"input": {"query": "json parser", "k": 3}}).json()
    assert [h["rank"] for h in hits["results"]] == [1, 2, 3] and hits["prediction"] == hits["results"][0]["id"]
    assert len(client.post("/v1/models/search/predict", json={"input": "json parser"}).json()["results"]) == 5
    many = client.post("/v1/models/txt/predict", json={"instances": ["json parser", "game server", "font"]}).json()
    assert len(many["predictions"]) == 3 and many["model"] == "txt"


def test_predict_defaults_to_the_text_classifier(client):
    r = client.post("/predict", json={"input": "python json library"})
    assert r.status_code == 200 and r.json()["model"] == "txt" and r.json()["prediction"] in {"admin", "devel",
                                                                                             "games", "libs"}
    assert client.post("/predict", json={"input": IMAGE, "model": "img"}).json()["model"] == "img"


def test_model_listing(client):
    models = client.get("/v1/models").json()["models"]
    assert {m["name"] for m in models} == {"img", "anom", "txt", "search"}
    one = client.get("/v1/models/txt").json()
    assert one["task"] == "text-classification" and len(one["sha256"]) == 64
    assert client.post("/v1/models/txt/predict", json=one["example"]).status_code == 200


def test_docs_have_an_example_body_for_every_post_route(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    posts = [(path, ops["post"]) for path, ops in spec["paths"].items() if "post" in ops]
    assert {p for p, op in posts if "requestBody" not in op} == {"/v1/models/{name}/retrain",
                                                                   "/v1/models/{name}/rollback"}
    posts = [(path, op) for path, op in posts if "requestBody" in op]
    assert len(posts) == 5
    for path, op in posts:
        examples = op["requestBody"]["content"]["application/json"]["examples"]
        assert examples, path
        name = re.search(r"/models/\{name\}", path)
        for key, ex in examples.items():  # every example is accepted by the server itself
            url = path.replace("{name}", key.split("=")[-1]).replace("{version}", "1") if name else path
            assert client.post(url, json=ex["value"]).status_code == 200, (url, ex)


# ------------------------------------------------------------------------------------------------ v2
def test_v2_server_health_and_metadata(client):
    assert client.get("/v2").json() == {"name": "dlm-serving", "version": "0.1.0",
                                        "extensions": ["binary_tensor_data"]}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    for path in ("/v2/models/img", "/v2/models/img/versions/1"):
        meta = client.get(path).json()
        # the protocol's $metadata_model_response: name, versions, platform, inputs, outputs
        assert set(meta) == {"name", "versions", "platform", "inputs", "outputs"}
        assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
        assert {t["name"] for t in meta["outputs"]} == {"logits", "embedding"}
    for path in ("/v2/models/txt/ready", "/v2/models/txt/versions/1/ready"):
        assert client.get(path).status_code == 200


def check_response_tensors(body: dict, model: str):
    # the protocol's $inference_response: model_name, model_version, id, outputs[{name, shape, datatype, data}]
    assert body["model_name"] == model and body["model_version"] == "1"
    for t in body["outputs"]:
        assert set(t) == {"name", "shape", "datatype", "data"}
        assert len(t["data"]) == math.prod(t["shape"])  # flat, row-major


def test_v2_infer_like_the_protocol_example(client, predictors):
    # the protocol's published example: {"id": "42", "inputs": [{name, shape, datatype, data}], "outputs": [{name}]}
    req = {"id": "42", "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                   "data": ["json parser library", "game server"]}],
           "outputs": [{"name": "label"}, {"name": "probabilities"}]}
    r = client.post("/v2/models/txt/infer", json=req)
    assert r.status_code == 200
    body = r.json()
    check_response_tensors(body, "txt")
    assert body["id"] == "42" and [t["name"] for t in body["outputs"]] == ["label", "probabilities"]
    assert body["outputs"][0]["datatype"] == "BYTES" and body["outputs"][1]["shape"] == [2, 4]
    want = predictors["txt"].predict(["json parser library", "game server"])
    assert body["outputs"][0]["data"] == [w["prediction"] for w in want]


def test_v2_infer_image_tensor_flat_or_nested(client, predictors):
    p = predictors["img"]
    x = np.stack([p.prepare(IMAGE), p.prepare(np.zeros((28, 28)).tolist())])
    flat = {"inputs": [{"name": "image", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": x.ravel().tolist()}]}
    nested = {"inputs": [{"name": "image", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": x.tolist()}]}
    a, b = client.post("/v2/models/img/versions/1/infer", json=flat), client.post("/v2/models/img/infer", json=nested)
    assert a.status_code == b.status_code == 200
    check_response_tensors(a.json(), "img")
    assert "id" not in a.json()
    logits = {t["name"]: t for t in a.json()["outputs"]}["logits"]
    assert logits["shape"] == [2, 10] and logits["datatype"] == "FP32"
    want = p.run(list(x)).tensors["logits"]
    np.testing.assert_allclose(np.reshape(logits["data"], (2, 10)), want, atol=1e-5)
    assert a.json()["outputs"] == b.json()["outputs"]


def test_v2_retrieval_and_anomaly(client):
    r = client.post("/v2/models/search/infer", json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                                                  "data": ["json parser"]}]})
    out = {t["name"]: t for t in r.json()["outputs"]}
    assert out["ids"]["shape"] == [1, 5] and out["scores"]["datatype"] == "FP32"
    x = np.zeros((1, 1, 28, 28)).ravel().tolist()
    r = client.post("/v2/models/anom/infer", json={"inputs": [{"name": "image", "shape": [1, 1, 28, 28],
                                                                "datatype": "FP32", "data": x}]})
    assert r.status_code == 200 and {t["name"] for t in r.json()["outputs"]} == {"error", "code"}


# ------------------------------------------------------------------------------------------------ 4xx
TEXT = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["json"]}
NAN_IMAGE = ('{"input": [[NaN' + ", 0" * 27 + "]" + (", [" + ", ".join(["0"] * 28) + "]") * 27 + "]}").encode()
BAD = [  # (method, path, body or raw bytes, content type, status, words in the message)
    ("post", "/v2/models/txt/infer", b'{"inputs": [', "application/json", 400, "not valid json"),
    ("post", "/v1/models/txt/predict", b"{'input': 1}", "application/json", 400, "not valid json"),
    ("post", "/v2/models/txt/infer", {"inputs": [{**TEXT, "name": "texts"}]}, None, 400, "named 'text'"),
    ("post", "/v2/models/txt/infer", {"inputs": [{**TEXT, "datatype": "FP32"}]}, None, 400, "fp32"),
    ("post", "/v2/models/txt/infer", {"inputs": [{**TEXT, "datatype": "STRING"}]}, None, 400, "unknown datatype"),
    ("post", "/v2/models/txt/infer", {"inputs": [{**TEXT, "shape": [2]}]}, None, 400, "holds 2 elements"),
    ("post", "/v2/models/txt/infer", {"inputs": [{**TEXT, "shape": [1, 1]}]}, None, 400, "shape"),
    ("post", "/v2/models/txt/infer", {"inputs": [TEXT], "outputs": [{"name": "nope"}]}, None, 400, "unknown output"),
    ("post", "/v2/models/txt/infer", {"inputs": [TEXT, TEXT]}, None, 400, "twice"),
    ("post", "/v2/models/txt/infer", {"inputs": []}, None, 400, "inputs"),
    ("post", "/v2/models/txt/infer", {"id": "1"}, None, 400, "inputs: field required"),
    ("post", "/v2/models/img/infer", {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP64",
                                                  "data": [0.0] * 784}]}, None, 400, "fp32"),
    ("post", "/v2/models/img/infer", {"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32",
                                                  "data": [0.0] * 784}]}, None, 400, "expected [-1, 1, 28, 28]"),
    ("post", "/v2/models/img/infer", {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "INT8",
                                                  "data": [300] * 784}]}, None, 400, "out of range"),
    ("post", "/v2/models/img/infer", {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                                  "data": ["a"] * 784}]}, None, 400, "numbers"),
    ("post", "/v2/models/nope/infer", {"inputs": [TEXT]}, None, 404, "no model named 'nope'"),
    ("post", "/v2/models/txt/versions/7/infer", {"inputs": [TEXT]}, None, 404, "no version '7'"),
    ("get", "/v2/models/txt/versions/7", None, None, 404, "no version"),
    ("get", "/v2/models/nope/ready", None, None, 404, "no model"),
    ("post", "/v1/models/nope/predict", {"input": "x"}, None, 404, "no model named"),
    ("post", "/v1/models/txt/predict", b"input=x", "application/x-www-form-urlencoded", 415, "application/json"),
    ("post", "/v1/models/txt/predict", b"x", "text/plain", 415, "not supported"),
    ("post", "/v1/models/txt/predict", {"input": "x" * 300_000}, None, 413, "limit"),
    ("post", "/v1/models/txt/predict", {"instances": ["json"] * 17}, None, 413, "at most 16"),
    ("post", "/v2/models/txt/infer", {"inputs": [{**TEXT, "shape": [17], "data": ["a"] * 17}]}, None, 413, "rows"),
    ("post", "/v1/models/txt/predict", {"input": "   "}, None, 400, "empty"),
    ("post", "/v1/models/txt/predict", {"input": 3}, None, 400, "string"),
    ("post", "/v1/models/txt/predict", {"instances": ["ok", ""]}, None, 400, "instances[1]"),
    ("post", "/v1/models/txt/predict", {}, None, 400, "either"),
    ("post", "/v1/models/txt/predict", {"input": "a", "instances": ["b"]}, None, 400, "either"),
    ("post", "/v1/models/txt/predict", {"inputs": "a"}, None, 422, "extra"),
    ("post", "/v1/models/img/predict", {"input": "aGVsbG8gd29ybGQ="}, None, 400, "does not decode"),
    ("post", "/v1/models/img/predict", {"input": "not base64!"}, None, 400, "base64"),
    ("post", "/v1/models/img/predict", {"input": [[1, 2], [3]]}, None, 400, "2-d array"),
    ("post", "/v1/models/img/predict", {"input": [[999] * 28] * 28}, None, 400, "0..255"),
    ("post", "/v1/models/img/predict", NAN_IMAGE, "application/json", 400, "nan or infinite"),
    ("post", "/v1/models/img/predict", {"input": [[2**1100, 0], [0, 0]]}, None, 400, "array of numbers"),
    ("post", "/v1/models/search/predict", {"input": {"query": "json", "k": 0}}, None, 400, "k must be"),
    ("post", "/predict", {"input": "x", "model": "nope"}, None, 404, "no model named"),
    ("get", "/v1/models/nope", None, None, 404, "no model"),
    ("get", "/nowhere", None, None, 404, "not found"),
    ("delete", "/v1/models/txt/predict", None, None, 405, "not allowed"),
]


@pytest.mark.parametrize("method,path,body,ctype,status,words", BAD, ids=[f"{b[4]}-{b[5][:20]}" for b in BAD])
def test_bad_requests_get_a_4xx_that_says_why(client, method, path, body, ctype, status, words):
    if isinstance(body, bytes):
        r = client.request(method, path, content=body, headers={"content-type": ctype})
    else:
        r = client.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert words.lower() in r.json()["error"].lower()


def test_metrics_count_codes_and_show_batches_above_one_under_concurrent_load(predictors):
    config = ServeConfig(max_batch_size=16, max_delay_ms=200)
    with TestClient(create_app(list(predictors.values()), config)) as c:
        n = 12
        barrier, codes = threading.Barrier(n), []

        def one(i):
            barrier.wait()
            codes.append(c.post("/v1/models/txt/predict", json={"input": f"json parser {i}"}).status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        c.post("/v1/models/txt/predict", json={"input": ""})
        text = c.get("/metrics").text
    assert codes == [200] * n
    rows = metric(text, "dlm_inference_rows_total", model="txt")
    executions = metric(text, "dlm_inference_executions_total", model="txt")
    assert rows == n and executions < n  # mean batch size = rows / executions > 1
    assert metric(text, "dlm_batch_size_rows_sum", model="txt") / metric(text, "dlm_batch_size_rows_count",
                                                                         model="txt") > 1
    assert metric(text, "dlm_requests_total", model="txt", code="200") == n
    assert metric(text, "dlm_requests_total", model="txt", code="400") == 1
    assert metric(text, "dlm_request_duration_seconds_count", model="txt") == n + 1
    assert metric(text, "dlm_queue_wait_seconds_count", model="txt") == n
    assert metric(text, "dlm_compute_seconds_count", model="txt") == executions
    assert metric(text, "dlm_queue_depth_rows", model="txt") == 0
    sha = predictors["txt"].sha256
    assert metric(text, "dlm_model_info", model="txt", version="1", sha256=sha) == 1


def test_v2_json_roundtrip_of_every_models_metadata_example(client):
    """Each model's docs example (built from its v2 metadata) runs, and outputs match the metadata's shapes."""
    spec = client.get("/openapi.json").json()
    examples = spec["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]
    for name, ex in examples["examples"].items():
        body = client.post(f"/v2/models/{name}/infer", content=json.dumps(ex["value"]),
                           headers={"content-type": "application/json"}).json()
        meta = {t["name"]: t for t in client.get(f"/v2/models/{name}").json()["outputs"]}
        for t in body["outputs"]:
            assert t["datatype"] == meta[t["name"]]["datatype"]
            assert [d for d in meta[t["name"]]["shape"] if d != -1] == t["shape"][1:]


def test_the_noop_model_answers_on_both_apis():
    from p10_serving.noop import NoOp

    with TestClient(create_app([NoOp()])) as c:
        r = c.post("/v1/models/noop/predict", json={"input": 1})
        assert r.status_code == 200 and r.json()["prediction"] is None and r.json()["model"] == "noop"
        r = c.post("/v2/models/noop/infer", json={"inputs": [{"name": "input", "shape": [3], "datatype": "FP32",
                                                              "data": [1, 2, 3]}]})
        assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [3]
        assert c.post("/predict", json={"input": "x"}).status_code == 404  # no text classifier loaded
