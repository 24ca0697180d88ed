"""The KServe v2 protocol layer (v2.py) without a server: JSON and binary tensors (the binary tensor extension)
in and out for every datatype, requests built by tritonclient's own serialization, responses read back by
tritonclient's InferResult, every malformed body a BadInput naming the problem, and too many rows refused from
the declared shape before any data is decoded."""

import json
import struct
import time

import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from dlm_core.predictors import BadInput
from p10_serving import v2
from p10_serving.v2 import InferCall, TooManyRows, parse_infer, write_infer

FIXED = [k for k in v2.DTYPES if k != "BYTES"]
TEXTS = ["a library for parsing JSON", "", "naïve café ☕", "x" * 300]


def sample(datatype: str, shape=(2, 3), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if datatype == "BYTES":
        arr = np.empty(n, object)
        arr[:] = [TEXTS[i % len(TEXTS)] + str(i) for i in range(n)]
        return arr.reshape(shape)
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    dt = np.dtype(v2.DTYPES[datatype])
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)


def triton_request(arrays: dict, binary, outputs=None, request_id=""):
    """A body and header length as tritonclient builds them (`binary`: a bool, or the set of binary inputs)."""
    inputs = []
    for name, (arr, datatype) in arrays.items():
        t = triton.InferInput(name, list(arr.shape), datatype)
        t.set_data_from_numpy(arr, binary_data=binary if isinstance(binary, bool) else name in binary)
        inputs.append(t)
    body, hlen = triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs, request_id=request_id)
    return body if isinstance(body, bytes) else body.encode(), hlen


def raw(header: dict, *blobs: bytes) -> tuple[bytes, int | None]:
    """A body by hand: the JSON header, then the blobs (header length None when there are none)."""
    head = json.dumps(header).encode()
    return head + b"".join(blobs), (len(head) if blobs else None)


def check_equal(got: np.ndarray, want: np.ndarray, datatype: str) -> None:
    assert got.shape == want.shape
    if datatype == "BYTES":
        assert got.dtype == object and got.tolist() == want.tolist()
    else:
        assert got.dtype == np.dtype(v2.DTYPES[datatype])
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------- requests
@pytest.mark.parametrize("datatype", list(v2.DTYPES))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_request_round_trip_every_datatype(datatype, binary):
    x = sample(datatype, (2, 3, 4))
    body, hlen = triton_request({"x": (x, datatype)}, binary)
    assert (hlen is not None) == binary
    call = parse_infer(body, hlen)
    want = np.vectorize(str.encode, otypes=[object])(x) if binary and datatype == "BYTES" else x
    check_equal(call.inputs["x"], want, datatype)  # binary BYTES arrive as bytes, JSON BYTES as str
    assert call.inputs["x"].flags.writeable


def test_binary_bytes_keep_any_bytes_and_empty_elements():
    x = np.array([b"\x00\xff\xfe", b"", b"plain", "é".encode()], dtype=object).reshape(2, 2)
    body, hlen = triton_request({"blob": (x, "BYTES")}, True)
    assert parse_infer(body, hlen).inputs["blob"].tolist() == x.tolist()


@pytest.mark.parametrize("datatype", ["FP32", "BYTES", "INT64"])
def test_empty_tensors(datatype):
    x = sample(datatype, (0, 3))
    for binary in (False, True):
        body, hlen = triton_request({"x": (x, datatype)}, binary)
        assert parse_infer(body, hlen).inputs["x"].shape == (0, 3)


def test_mixed_binary_and_json_inputs_keep_their_offsets():
    arrays = {"a": (sample("FP32", (3, 2)), "FP32"), "b": (sample("INT16", (4,)), "INT16"),
              "c": (sample("BYTES", (5,)), "BYTES"), "d": (sample("BOOL", (2, 2)), "BOOL")}
    body, hlen = triton_request(arrays, {"a", "c", "d"})  # binary, JSON, binary, binary
    head = json.loads(body[:hlen])
    assert "data" in head["inputs"][1] and "binary_data_size" in head["inputs"][0]["parameters"]
    call = parse_infer(body, hlen)
    check_equal(call.inputs["a"], arrays["a"][0], "FP32")
    check_equal(call.inputs["b"], arrays["b"][0], "INT16")
    assert call.inputs["c"].tolist() == [s.encode() for s in arrays["c"][0]]
    check_equal(call.inputs["d"], arrays["d"][0], "BOOL")


def test_outputs_id_and_binary_flags_as_tritonclient_sends_them():
    x = sample("FP32", (1, 4))
    outs = [triton.InferRequestedOutput("logits", binary_data=True), triton.InferRequestedOutput("probs",
                                                                                                 binary_data=False)]
    body, hlen = triton_request({"x": (x, "FP32")}, True, outputs=outs, request_id="req-7")
    call = parse_infer(body, hlen)
    assert (call.id, call.outputs, call.binary, call.as_json, call.binary_all) == (
        "req-7", ["logits", "probs"], {"logits"}, {"probs"}, False)
    assert call.is_binary("logits") and not call.is_binary("probs")
    # no outputs named: tritonclient asks for every output in binary (binary_data_output)
    call = parse_infer(*triton_request({"x": (x, "FP32")}, False))
    assert (call.id, call.outputs, call.binary_all) == (None, None, True) and call.is_binary("anything")


def test_json_details_kept_from_the_pydantic_path():
    # nested data, NaN (through the json module), an empty outputs list meaning all, extra keys ignored
    body = (b'{"id": "1", "model_name": "m", "outputs": [], "inputs": [{"name": "x", "shape": [2, 2], '
            b'"datatype": "FP32", "data": [[1, 2], [3, NaN]], "parameters": {"content_type": "np"}}]}')
    call = parse_infer(body, None)
    assert call.outputs is None and call.binary_all is False and call.id == "1"
    assert call.inputs["x"][0].tolist() == [1.0, 2.0] and np.isnan(call.inputs["x"][1, 1])


@pytest.mark.parametrize("as_sent", [int, str, lambda n: str(n).encode(), lambda n: f" {n} ".encode()],
                         ids=["int", "str", "bytes", "padded"])
def test_header_length_as_int_or_as_sent(as_sent):
    body, hlen = triton_request({"x": (np.arange(3, dtype=np.int32), "INT32")}, True)
    assert parse_infer(body, as_sent(hlen)).inputs["x"].tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------------------- responses
@pytest.mark.parametrize("datatype", list(v2.DTYPES))
def test_write_infer_read_back_by_tritonclient(datatype):
    a, b = sample(datatype, (2, 3), 1), sample(datatype, (4,), 2)
    body, headers = write_infer("m", "3", "req-1", [("a", a, datatype), ("b", b, datatype)], binary={"a"})
    assert headers["content-type"] == "application/octet-stream"
    head = orjson.loads(body[:int(headers["inference-header-content-length"])])
    assert head["model_name"] == "m" and head["model_version"] == "3" and head["id"] == "req-1"
    assert head["outputs"][0] == {"name": "a", "datatype": datatype, "shape": [2, 3],
                                  "parameters": {"binary_data_size": len(body) - len(orjson.dumps(head))}}
    assert "data" in head["outputs"][1]
    result = triton.InferResult.from_response_body(body, header_length=headers["inference-header-content-length"])
    got_a, got_b = result.as_numpy("a"), result.as_numpy("b")
    if datatype == "BYTES":
        assert got_a.tolist() == [[s.encode() for s in row] for row in a.tolist()]  # binary BYTES are bytes
        assert got_b.tolist() == b.tolist()
    else:
        np.testing.assert_array_equal(got_a, a)
        np.testing.assert_array_equal(got_b, b)
        assert got_a.dtype == got_b.dtype == a.dtype


def test_write_infer_json_only_and_binary_all_with_override():
    x, y = np.arange(6, dtype=np.float32).reshape(2, 3), np.array(["cat", "dog"], dtype=object)
    body, headers = write_infer("m", "1", None, [("x", x, "FP32"), ("y", y, "BYTES")], set(), False)
    assert headers == {"content-type": "application/json"}
    assert orjson.loads(body) == {"model_name": "m", "model_version": "1", "outputs": [
        {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]},
        {"name": "y", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]}]}
    assert triton.InferResult.from_response_body(body).as_numpy("y").tolist() == ["cat", "dog"]

    body, headers = write_infer("m", "1", None, [("x", x, "FP32"), ("y", y, "BYTES")], binary_all=True,
                                as_json={"y"})
    hlen = int(headers["inference-header-content-length"])
    head = orjson.loads(body[:hlen])
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 24} and "data" in head["outputs"][1]
    assert body[hlen:] == x.astype("<f4").tobytes()


def test_write_infer_bytes_layout_and_odd_arrays():
    y = np.array(["é", b"\x00", 7], dtype=object)
    body, headers = write_infer("m", "1", None, [("y", y, "BYTES")], {"y"})
    hlen = int(headers["inference-header-content-length"])
    assert body[hlen:] == b"\x02\x00\x00\x00\xc3\xa9" + b"\x01\x00\x00\x00\x00" + b"\x01\x00\x00\x007"
    # a transposed (non-contiguous) array and a 0-d array go out row-major in their own shape
    t, s = np.arange(6, dtype=np.int64).reshape(2, 3).T, np.array(2.5, np.float64)
    body, headers = write_infer("m", "1", None, [("t", t, "INT64"), ("s", s, "FP64")], binary_all=True)
    result = triton.InferResult.from_response_body(body, header_length=headers["inference-header-content-length"])
    np.testing.assert_array_equal(result.as_numpy("t"), t)
    assert result.as_numpy("s").shape == () and result.as_numpy("s") == 2.5


def test_request_to_response_round_trip_through_tritonclient():
    """Client request -> parse_infer -> (an identity model) -> write_infer -> client result."""
    x = sample("FP16", (3, 5))
    outs = [triton.InferRequestedOutput("y", binary_data=True)]
    call = parse_infer(*triton_request({"x": (x, "FP16")}, True, outputs=outs, request_id="9"))
    tensors = [(name, call.inputs["x"], "FP16") for name in call.outputs]
    body, headers = write_infer("m", "1", call.id, tensors, call.binary, call.binary_all, call.as_json)
    result = triton.InferResult.from_response_body(body, header_length=headers["inference-header-content-length"])
    assert result.get_response()["id"] == "9"
    np.testing.assert_array_equal(result.as_numpy("y"), x)


# ------------------------------------------------------------------------------------------- malformed
def T(name="x", shape=(2,), datatype="FP32", **kw):  # noqa: N802  (a tensor header)
    return {"name": name, "shape": list(shape), "datatype": datatype, **kw}


F32 = np.arange(2, dtype="<f4").tobytes()
BAD = {  # id: ((body, header length), words in the message)
    "header not a number": ((raw({"inputs": [T(data=[1, 2])]})[0], "12a"), "non-negative integer"),
    "header negative": ((raw({"inputs": [T(data=[1, 2])]})[0], -1), "non-negative integer"),
    "header negative text": ((raw({"inputs": [T(data=[1, 2])]})[0], "-1"), "non-negative integer"),
    "header past the body": ((b'{"inputs": []}', 15), "body has only 14 bytes"),
    "header zero": ((F32, 0), "raw binary"),
    "not json": ((b'{"inputs": [', None), "body is not valid JSON"),
    "header cuts the json": ((raw({"inputs": [T(data=[1, 2])]})[0], 10), "body is not valid JSON"),
    "not utf-8": ((b'{"id": "\xff"}', None), "body is not valid JSON"),
    "not an object": ((b"[1, 2]", None), "JSON object"),
    "no inputs": (raw({"id": "1"}), "inputs: field required"),
    "empty inputs": (raw({"inputs": []}), "non-empty list"),
    "inputs not a list": (raw({"inputs": {"name": "x"}}), "non-empty list"),
    "input not an object": (raw({"inputs": ["x"]}), "inputs[0] must be an object"),
    "no name": (raw({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}), "inputs[0]: name must"),
    "twice": (raw({"inputs": [T(data=[1, 2]), T(data=[1, 2])]}), "input 'x' is given twice"),
    "datatype missing": (raw({"inputs": [{"name": "x", "shape": [1], "data": [1]}]}), "'x': datatype must"),
    "unknown datatype": (raw({"inputs": [T(datatype="STRING", data=["a", "b"])]}), "'x': unknown datatype"),
    "shape not a list": (raw({"inputs": [{**T(data=[1]), "shape": 1}]}), "'x': shape must be a list of int"),
    "shape of floats": (raw({"inputs": [T(shape=[2.0], data=[1, 2])]}), "'x': shape must be a list of int"),
    "shape of bools": (raw({"inputs": [T(shape=[True], data=[1])]}), "'x': shape must be a list of int"),
    "negative dim": (raw({"inputs": [T(shape=[-1], data=[1])]}), "'x': shape [-1] has a negative dimension"),
    "huge empty shape": (raw({"inputs": [T(shape=[2**63, 0], data=[])]}), "'x': shape [9223372036854775808, 0] is "
                                                                            "too large"),
    "huge empty shape, bytes": (raw({"inputs": [T(datatype="BYTES", shape=[2**62, 0], parameters={
        "binary_data_size": 0})]}, b""), "'x': shape [4611686018427387904, 0] is too large"),
    "count": (raw({"inputs": [T(data=[1])]}), "'x': shape [2] holds 2 elements but data has 1"),
    "fp from strings": (raw({"inputs": [T(data=["a", "b"])]}), "'x': data does not match datatype FP32 (JSON "
                                                               "numbers"),
    "int from floats": (raw({"inputs": [T(datatype="INT32", data=[1.5, 2])]}), ("input 'x'", "INT32 (JSON integers")),
    "bool from ints": (raw({"inputs": [T(datatype="BOOL", data=[1, 0])]}), ("input 'x'", "BOOL (JSON booleans")),
    "bytes from numbers": (raw({"inputs": [T(datatype="BYTES", data=[1, 2])]}), "'x': BYTES data must be str"),
    "int8 range": (raw({"inputs": [T(datatype="INT8", data=[300, 1])]}), "'x': a value is out of range for INT8"),
    "uint8 negative": (raw({"inputs": [T(datatype="UINT8", data=[-1, 1])]}), "'x': a value is out of range"),
    "int64 over 64 bits": ((b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [%d]}]}'
                            % 2**70, None), "'x': a value is out of range for INT64"),
    "no data": (raw({"inputs": [T()]}), "'x': data is required"),
    "data and binary": (raw({"inputs": [T(data=[1, 2], parameters={"binary_data_size": 8})]}, F32),
                        "'x' has both data and parameters.binary_data_size"),
    "parameters not an object": (raw({"inputs": [T(data=[1, 2], parameters=[1])]}), "'x': parameters must be"),
    "shared memory": (raw({"inputs": [T(parameters={"shared_memory_region": "r"})]}), "'x': the shared memory"),
    "size wrong": (raw({"inputs": [T(parameters={"binary_data_size": 7})]}, F32[:7]),
                   "'x': binary_data_size 7 does not match shape [2] of FP32 (8 bytes)"),
    "size negative": (raw({"inputs": [T(parameters={"binary_data_size": -8})]}, F32), "'x': binary_data_size "
                                                                                      "must be a non-negative"),
    "size text": (raw({"inputs": [T(parameters={"binary_data_size": "8"})]}, F32), "'x': binary_data_size must"),
    "size overruns": (raw({"inputs": [T(parameters={"binary_data_size": 8}),
                                      T("y", parameters={"binary_data_size": 8})]}, F32, F32[:4]),
                      "'y': binary_data_size 8 runs past the end of the body (4 bytes left"),
    "binary without header": (raw({"inputs": [T(parameters={"binary_data_size": 8})]}),
                              "'x': binary_data_size 8 but the request has no binary part"),
    "binary data, header missing": ((raw({"inputs": [T(parameters={"binary_data_size": 8})]}, F32)[0], None),
                                    ("body is not valid JSON", "needs the Inference-Header-Content-Length")),
    "trailing bytes": (raw({"inputs": [T(parameters={"binary_data_size": 8})]}, F32, b"\x00\x01"),
                       "2 bytes after the JSON part are not claimed"),
    "trailing bytes, json only": (raw({"inputs": [T(data=[1, 2])]}, b"abc"), "3 bytes after the JSON part"),
    "bool byte 2": (raw({"inputs": [T(datatype="BOOL", parameters={"binary_data_size": 2})]}, b"\x01\x02"),
                    "'x': BOOL binary data must be bytes 0 or 1"),
    "bytes prefix cut": (raw({"inputs": [T(datatype="BYTES", shape=[1], parameters={"binary_data_size": 2})]},
                             b"\x01\x00"), "'x': BYTES binary data ends inside the 4-byte length of element 0"),
    "bytes element too long": (raw({"inputs": [T(datatype="BYTES", shape=[1],
                                                 parameters={"binary_data_size": 6})]}, b"\x09\x00\x00\x00ab"),
                               "'x': BYTES element 0 has a length of 9 bytes but only 2 remain"),
    "bytes fewer elements": (raw({"inputs": [T(datatype="BYTES", shape=[2], parameters={"binary_data_size": 5})]},
                                 b"\x01\x00\x00\x00a"), ("'x': BYTES binary data ends inside", "element 1")),
    "bytes more elements": (raw({"inputs": [T(datatype="BYTES", shape=[1], parameters={"binary_data_size": 10})]},
                                b"\x01\x00\x00\x00a\x01\x00\x00\x00b"), "'x': BYTES binary data has 5 bytes left"),
    "id not a string": (raw({"id": 5, "inputs": [T(data=[1, 2])]}), "id must be a string"),
    "request parameters": (raw({"parameters": 3, "inputs": [T(data=[1, 2])]}), "the request: parameters must"),
    "binary_data_output": (raw({"parameters": {"binary_data_output": "yes"}, "inputs": [T(data=[1, 2])]}),
                           "binary_data_output must be true or false"),
    "outputs not a list": (raw({"inputs": [T(data=[1, 2])], "outputs": "y"}), "outputs must be a list"),
    "output no name": (raw({"inputs": [T(data=[1, 2])], "outputs": [{"parameters": {}}]}), "outputs[0] must"),
    "output twice": (raw({"inputs": [T(data=[1, 2])], "outputs": [{"name": "y"}, {"name": "y"}]}),
                     "output 'y' is asked for twice"),
    "binary_data not bool": (raw({"inputs": [T(data=[1, 2])], "outputs": [{"name": "y", "parameters": {
        "binary_data": 1}}]}), "output 'y': binary_data must be true or false"),
    "classification": (raw({"inputs": [T(data=[1, 2])], "outputs": [{"name": "y", "parameters": {
        "classification": 3}}]}), "output 'y': the classification extension is not supported"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_requests_are_bad_input_naming_the_problem(case):
    (body, hlen), words = BAD[case]
    with pytest.raises(BadInput) as err:
        parse_infer(body, hlen)
    for piece in [words] if isinstance(words, str) else words:  # literal pieces of the message
        assert piece in str(err.value), (piece, str(err.value))


# ------------------------------------------------------------------------------------------- max_rows
def no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tensor data was decoded")

    for fn in ("_from_json", "_from_binary", "unpack_bytes", "flatten"):
        monkeypatch.setattr(v2, fn, refuse)


def test_too_many_rows_refused_from_the_declared_shape_before_decoding(monkeypatch):
    n = 600_000
    data = b"\x01\x00\x00\x00a" * n  # what tritonclient sends for n one-letter BYTES elements
    body, hlen = raw({"inputs": [T("text", shape=[n], datatype="BYTES", parameters={"binary_data_size": len(data)})]},
                     data)
    assert parse_infer(*raw({"inputs": [T("text", shape=[3], datatype="BYTES", parameters={"binary_data_size": 15})]},
                            data[:15]), max_rows=256).inputs["text"].tolist() == [b"a"] * 3
    no_decoding(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(TooManyRows, match="600000 rows in one request \\(input 'text'\\); at most 256"):
        parse_infer(body, hlen, max_rows=256)
    assert time.perf_counter() - start < 0.05
    # the same as JSON; and a later input's rows refuse the request before an earlier input is decoded
    json_body = orjson.dumps({"inputs": [T("a", shape=[2], data=[1, 2]), T("text", shape=[n], datatype="BYTES",
                                                                           data=["a"] * n)]})
    with pytest.raises(TooManyRows, match="600000 rows"):
        parse_infer(json_body, None, max_rows=256)


def test_max_rows_limits_only_the_first_dimension(monkeypatch):
    call = parse_infer(*raw({"inputs": [T(shape=[256, 3], data=[0.0] * 768), T("s", shape=[], data=[1.0])]}),
                       max_rows=256)
    assert call.inputs["x"].shape == (256, 3) and call.inputs["s"].shape == ()
    no_decoding(monkeypatch)
    with pytest.raises(TooManyRows, match="257 rows"):
        parse_infer(*raw({"inputs": [T(shape=[257, 1], data=[0.0] * 257)]}), max_rows=256)


# ------------------------------------------------------------------------------------------- the old API
def test_pydantic_models_decode_and_encode_still_work():
    req = v2.InferRequest.model_validate({"inputs": [T(shape=[2, 2], data=[[1, 2], [3, 4]])]})
    arr = v2.decode(req.inputs[0])
    assert arr.dtype == np.float32 and arr.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(BadInput, match="holds 4 elements"):
        v2.decode(v2.RequestInput(**T(shape=[2, 2], data=[1])))
    assert v2.encode("y", np.array([b"a", "b"], dtype=object), "BYTES")["data"] == ["a", "b"]
    example = v2.example_request([{"name": "text", "datatype": "BYTES", "shape": [-1]}], "hi")
    assert isinstance(parse_infer(orjson.dumps(example), None), InferCall)


def test_struct_layout_matches_tritonclient_serialization():
    from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

    x = np.array(["a", "", "héllo", b"\xff"], dtype=object)
    ours = v2.pack(x, "BYTES")
    assert ours == serialize_byte_tensor(x).item()
    assert deserialize_bytes_tensor(ours).tolist() == [b"a", b"", "héllo".encode(), b"\xff"]
    assert struct.unpack_from("<I", ours)[0] == 1


def test_mangled_requests_are_bad_input_or_parse():
    """Random byte flips, cuts and header lengths over a mixed request: a BadInput or a parse, never another error."""
    arrays = {"a": (sample("FP32", (2, 3)), "FP32"), "b": (sample("BYTES", (3,)), "BYTES"),
              "c": (sample("INT8", (4,)), "INT8"), "d": (sample("BOOL", (2,)), "BOOL")}
    body, hlen = triton_request(arrays, {"a", "b", "d"})
    rng = np.random.default_rng(0)
    for _ in range(2000):
        b, h = bytearray(body), hlen
        for _ in range(rng.integers(1, 4)):
            kind = rng.integers(4) if len(b) > 1 else 2
            if kind == 0:
                b[rng.integers(len(b))] = int(rng.integers(256))
            elif kind == 1:
                del b[rng.integers(len(b)):]
            elif kind == 2:
                h = int(rng.integers(-2, len(body) + 2))
            else:
                i = int(rng.integers(len(b)))
                b[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 5)), dtype=np.uint8))
        try:
            parse_infer(bytes(b), h, max_rows=1000)
        except BadInput:
            pass
