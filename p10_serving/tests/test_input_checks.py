"""Inputs checked before they cost anything (issue #31): an image's declared size is read from its header and
refused before any pixel is decoded (a decompression bomb is a 413, not a 500), a raw pixel array must have the
model's own size (only PNG/JPEG are resized), and the search model takes the flat body clients send first."""

import base64
import functools
import io
import struct
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dlm_core.predictors import BadInput
from p10_serving.app import ServeConfig, create_app


@pytest.fixture(scope="module")
def client(predictors):
    with TestClient(create_app(list(predictors.values()), ServeConfig(max_body_bytes=200_000))) as c:
        yield c


def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit grey PNG of side x side zeros: 50 MB of rows that deflate to ~50 KB, 400 MB once decoded to
    8-bit grey (what a server that decodes first allocates)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), bytes(1 + (side + 7) // 8)  # filter byte 0 + packed bits
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def jpeg_bomb(side: int = 30_000) -> bytes:
    """A small real JPEG whose frame header (SOF0) declares side x side pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (16, 16)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", side, side)
    return bytes(data)


@pytest.mark.parametrize("make", [png_bomb, functools.partial(png_bomb, 12_000), jpeg_bomb],
                         ids=["png-20000", "png-12000", "jpeg-30000"])
def test_an_image_bomb_is_refused_from_its_header_quickly(client, predictors, make):
    from dlm_core.predictors import InputTooLarge

    bomb = make()
    assert len(bomb) < 100_000
    with pytest.raises(InputTooLarge, match="at most"):
        predictors["img"].prepare(bomb)
    body = {"input": base64.b64encode(bomb).decode()}
    t0 = time.perf_counter()
    r = client.post("/v1/models/img/predict", json=body)
    took = time.perf_counter() - t0
    assert r.status_code == 413, r.text
    assert "px" in r.json()["error"] and "at most" in r.json()["error"]
    assert took < 1.0, f"{took:.2f} s: the pixels were decoded"
    assert client.post("/v1/models/anom/predict", json=body).status_code == 413


def test_an_image_that_is_not_png_or_jpeg_is_refused(client):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="BMP")
    r = client.post("/v1/models/img/predict", json={"input": base64.b64encode(buf.getvalue()).decode()})
    assert r.status_code == 400 and "png or jpeg" in r.json()["error"].lower()


def test_a_raw_array_of_another_size_is_refused_not_resized(client, predictors):
    for bad in ([[0] * 7] * 5, [[0] * 29] * 28, [[[0, 0, 0]] * 7] * 5):
        r = client.post("/v1/models/img/predict", json={"input": bad})
        assert r.status_code == 400, r.text
        assert "[28, 28]" in r.json()["error"] and "png" in r.json()["error"].lower()
        assert client.post("/v1/models/anom/predict", json={"instances": [bad]}).status_code == 400
    with pytest.raises(BadInput, match=r"shape \[5, 7\]"):
        predictors["img"].prepare(np.zeros((5, 7)))
    # the model's own size, in grey, colour or channel-first, is taken; a PNG of another size is resized
    for ok in ([[0] * 28] * 28, [[[0, 0, 0]] * 28] * 28, [[[0] * 28] * 28]):
        assert client.post("/v1/models/img/predict", json={"input": ok}).status_code == 200
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (7, 5)).save(buf, format="PNG")
    r = client.post("/v1/models/img/predict", json={"input": base64.b64encode(buf.getvalue()).decode()})
    assert r.status_code == 200, r.text


def test_a_v2_image_tensor_of_another_size_is_refused(client):
    for shape in ([1, 1, 5, 7], [1, 1, 28, 29], [1, 3, 28, 28]):
        r = client.post("/v2/models/img/infer", json={"inputs": [{"name": "image", "shape": shape,
                                                                    "datatype": "FP32",
                                                                    "data": [0.0] * int(np.prod(shape))}]})
        assert r.status_code == 400, r.text
        assert "expected [-1, 1, 28, 28]" in r.json()["error"]


def test_the_search_model_takes_the_flat_body_with_k(client, predictors):
    nested = client.post("/v1/models/search/predict", json={"input": {"query": "json parser", "k": 3}})
    flat = client.post("/v1/models/search/predict", json={"input": "json parser", "k": 3})
    assert flat.status_code == nested.status_code == 200, flat.text
    assert flat.json()["results"] == nested.json()["results"] and len(flat.json()["results"]) == 3
    many = client.post("/v1/models/search/predict", json={"instances": ["json parser", {"query": "game"}], "k": 2})
    assert many.status_code == 200, many.text
    assert [len(p["results"]) for p in many.json()["predictions"]] == [2, 2]
    own = client.post("/v1/models/search/predict", json={"instances": [{"query": "game", "k": 4}], "k": 2})
    assert len(own.json()["predictions"][0]["results"]) == 4  # an item's own k wins
    r = client.post("/predict", json={"input": "json parser", "k": 1, "model": "search"})
    assert r.status_code == 200 and len(r.json()["results"]) == 1
    bad = client.post("/v1/models/search/predict", json={"input": "json parser", "k": 0})
    assert bad.status_code == 400 and "k must be" in bad.json()["error"]
    other = client.post("/v1/models/txt/predict", json={"input": "json parser", "k": 3})
    assert other.status_code == 422 and "k" in other.json()["error"]
