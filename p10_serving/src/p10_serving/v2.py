"""The KServe v2 / Open Inference Protocol REST bodies, with the binary tensor extension (tritonclient's
default, binary_data=True): bytes in, numpy arrays out, and back, with no pydantic on the way. Every mistake
in a request is a BadInput (400) naming the tensor and what is wrong with it; too many rows is TooManyRows
(the app answers 413), found from the declared shapes before any tensor data is decoded.

    parse_infer(body: bytes, header_length: int | str | bytes | None, max_rows: int | None = None) -> InferCall
        body: the whole request body; header_length: the request's `Inference-Header-Content-Length` header
        as sent (None when absent: the whole body is JSON). Raises BadInput or TooManyRows.
    InferCall(id: str | None, inputs: dict[str, np.ndarray], outputs: list[str] | None (None: all),
              binary: set[str], binary_all: bool, as_json: set[str])
    write_infer(model, version, id, tensors: list[(name, array, datatype)], binary=(), binary_all=False,
                as_json=()) -> (body: bytes, headers: dict[str, str])
        an output goes binary when its name is in `binary`, or `binary_all` and it is not in `as_json`;
        headers: content-type application/json, or application/octet-stream plus
        inference-header-content-length (the JSON part's length) when any output is binary.

The bodies (https://github.com/kserve/kserve/blob/master/docs/predict-api/v2/extensions/binary_tensor.md):

    request:  JSON {"id"?, "parameters"?: {"binary_data_output"?: bool},
                    "inputs": [{"name", "shape", "datatype", "data" | "parameters": {"binary_data_size": N}}],
                    "outputs"?: [{"name", "parameters"?: {"binary_data"?: bool}}]}
              then, when the Inference-Header-Content-Length header gives the JSON's length, the binary
              inputs' bytes in input order, N each, nothing after them.
    response: JSON {"model_name", "model_version", "id"?, "outputs": [{"name", "shape", "datatype",
                    "data" | "parameters": {"binary_data_size": N}}]}, then the binary outputs' bytes.
    error:    {"error": "..."}

Tensor bytes are row-major and little-endian in the datatype's own size; BOOL is one byte, 0 or 1; a BYTES
element is a 4-byte little-endian length and that many bytes. JSON `data` is flat or nested row-major lists.
BYTES inputs decode to an object array of str (JSON) or of bytes (binary); outputs take str or bytes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import struct
from collections.abc import Collection
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, Field

from dlm_core.predictors import BadInput

DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
          "FP32": np.float32, "FP64": np.float64, "BYTES": object}
# the wire dtype of each fixed-size datatype: little-endian whatever the machine
WIRE = {k: np.dtype(v).newbyteorder("<") for k, v in DTYPES.items() if k != "BYTES"}
HEADER = "inference-header-content-length"  # the request and response header naming the JSON part's length
BINARY_TYPE = "application/octet-stream"
JSON_TYPE = "application/json"
_U32 = struct.Struct("<I")


class TooManyRows(Exception):
    """A request whose declared shape has more rows than the server takes at once: 413."""


# ------------------------------------------------------------------------- pydantic models (OpenAPI docs)
class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = Field(None, description='{"binary_data_size": N}: the tensor is the N '
                                                                "bytes after the JSON (binary tensor extension)")
    data: Any = Field(description="the elements in row-major order, flat or nested")


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description='{"binary_data": true}: returned as binary')


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(None, description='{"binary_data_output": true}: every output '
                                                                "returned as binary")
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


# ------------------------------------------------------------------------------------------- JSON tensors
def flatten(data) -> list:
    """Nested lists -> one flat list (iterative: a deeply nested body cannot blow the stack)."""
    if not isinstance(data, list):
        return [data]
    if list not in set(map(type, data)):  # already flat (the protocol's usual form): no Python loop
        return data
    out, stack = [], [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


# the JSON types each datatype accepts (exact types: a JSON true is not a number here)
JSON_TYPES = {"BYTES": {str}, "BOOL": {bool}, **{k: {int, float} for k in DTYPES if k.startswith("FP")},
              **{k: {int} for k in DTYPES if k not in ("BYTES", "BOOL") and not k.startswith("FP")}}


def _check_spec(where: str, datatype: str, shape: list[int]) -> None:
    if datatype not in DTYPES:
        raise BadInput(f"{where}: unknown datatype {datatype!r}; one of {sorted(DTYPES)}")
    if any(d < 0 for d in shape):
        raise BadInput(f"{where}: shape {shape} has a negative dimension")


def _from_json(where: str, shape: list[int], datatype: str, data) -> np.ndarray:
    flat = flatten(data)
    n = math.prod(shape)
    if len(flat) != n:
        raise BadInput(f"{where}: shape {shape} holds {n} elements but data has {len(flat)}")
    if not set(map(type, flat)) <= JSON_TYPES[datatype]:  # one C-level pass over the elements
        if datatype == "BYTES":
            raise BadInput(f"{where}: BYTES data must be strings")
        kind = "booleans" if datatype == "BOOL" else "numbers" if datatype.startswith("FP") else "integers"
        if kind == "integers" and all(type(v) is int or (type(v) is float and v.is_integer() and abs(v) >= 2**63)
                                      for v in flat):  # orjson reads integers over 64 bits as floats
            raise BadInput(f"{where}: a value is out of range for {datatype}")
        raise BadInput(f"{where}: data does not match datatype {datatype} (JSON {kind} expected)")
    if datatype == "BYTES":
        arr = np.empty(len(flat), object)
        arr[:] = flat
        return _reshape(where, arr, shape)
    try:
        with np.errstate(over="raise"):
            arr = np.asarray(flat, DTYPES[datatype])
    except (OverflowError, FloatingPointError, ValueError):
        raise BadInput(f"{where}: a value is out of range for {datatype}") from None
    return _reshape(where, arr, shape)


def _reshape(where: str, arr: np.ndarray, shape: list[int]) -> np.ndarray:
    try:
        return arr.reshape(shape)
    except ValueError:  # dims numpy cannot hold even when one of them is 0 (2**63, 0)
        raise BadInput(f"{where}: shape {shape} is too large for an array") from None


def decode(t: RequestInput) -> np.ndarray:
    """One request tensor (pydantic, JSON data) -> a numpy array of its shape and datatype."""
    where = f"input {t.name!r}"
    _check_spec(where, t.datatype, t.shape)
    return _from_json(where, t.shape, t.datatype, t.data)


def encode(name: str, arr: np.ndarray, datatype: str) -> dict:
    """A numpy array -> a response tensor (flat row-major data)."""
    if arr.dtype == object:
        data = [x.decode() if isinstance(x, bytes) else str(x) for x in arr.ravel()]
    else:
        data = arr.astype(DTYPES[datatype], copy=False).ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": data}


# ----------------------------------------------------------------------------------------- binary tensors
def _from_binary(where: str, shape: list[int], datatype: str, body: bytes, start: int, size: int) -> np.ndarray:
    """The `size` bytes of `body` at `start` (already checked to lie in the body) -> an array."""
    n = math.prod(shape)
    if datatype == "BYTES":
        return _reshape(where, unpack_bytes(where, body, start, size, n), shape)
    arr = np.frombuffer(body, WIRE[datatype], n, start)  # size == n * itemsize was checked
    if datatype == "BOOL" and arr.view(np.uint8).max(initial=0) > 1:
        raise BadInput(f"{where}: BOOL binary data must be bytes 0 or 1")
    return _reshape(where, arr.astype(DTYPES[datatype]), shape)  # a writable copy, the machine's byte order


def unpack_bytes(where: str, body: bytes, start: int, size: int, n: int) -> np.ndarray:
    """n BYTES elements (4-byte little-endian length, then the bytes) filling body[start:start + size]."""
    buf = body[start:start + size]  # its own bounds end the element reads
    items, off, k = [], 0, 0
    append, unpack = items.append, _U32.unpack_from
    try:
        for k in range(n):
            (m,) = unpack(buf, off)
            off += 4
            item = buf[off:off + m]
            if len(item) != m:
                raise BadInput(f"{where}: BYTES element {k} has a length of {m} bytes but only {len(item)} remain "
                               f"in its binary_data_size of {size}")
            append(item)
            off += m
    except struct.error:
        raise BadInput(f"{where}: BYTES binary data ends inside the 4-byte length of element {k} "
                       f"(shape declares {n} elements, binary_data_size is {size})") from None
    if off != size:
        raise BadInput(f"{where}: BYTES binary data has {size - off} bytes left after its {n} elements "
                       f"(binary_data_size {size})")
    arr = np.empty(n, object)
    arr[:] = items
    return arr


def pack(arr: np.ndarray, datatype: str) -> bytes:
    """An array -> its binary tensor bytes (row-major, little-endian; BYTES length-prefixed)."""
    if datatype == "BYTES":
        items = [x if isinstance(x, bytes) else (x if isinstance(x, str) else str(x)).encode()
                 for x in np.asarray(arr).ravel().tolist()]
        return b"".join(itertools.chain.from_iterable((_U32.pack(len(b)), b) for b in items))
    return np.ascontiguousarray(arr, WIRE[datatype]).tobytes()


# --------------------------------------------------------------------------------------- the infer request
@dataclasses.dataclass
class InferCall:
    """A parsed infer request."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None                # the output names asked for, in order; None: all of them
    binary: set[str]                         # outputs asked for with "binary_data": true
    binary_all: bool                         # request parameter "binary_data_output": true
    as_json: set[str] = dataclasses.field(default_factory=set)  # "binary_data": false (overrides binary_all)

    def is_binary(self, name: str) -> bool:
        return name in self.binary or (self.binary_all and name not in self.as_json)


def _short(x: Any, limit: int = 60) -> str:
    r = repr(x)
    return r if len(r) <= limit else r[:limit] + "..."


def _parameters(where: str, p: Any) -> dict:
    if p is None:
        return {}
    if not isinstance(p, dict):
        raise BadInput(f"{where}: parameters must be an object, got {_short(p)}")
    if "shared_memory_region" in p:
        raise BadInput(f"{where}: the shared memory extension is not supported; send the data in the body")
    return p


def _header_length(value: int | str | bytes | None, body_length: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bytes | str):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if not text.strip().isascii() or not text.strip().isdigit():
            raise BadInput(f"Inference-Header-Content-Length must be a non-negative integer, got {_short(text)}")
        value = int(text)
    if type(value) is not int or value < 0:
        raise BadInput(f"Inference-Header-Content-Length must be a non-negative integer, got {_short(value)}")
    if value > body_length:
        raise BadInput(f"Inference-Header-Content-Length is {value} but the body has only {body_length} bytes")
    if value == 0:
        raise BadInput("Inference-Header-Content-Length is 0: a request without its JSON part (raw binary) "
                       "is not supported; send the JSON inference request first")
    return value


def parse_json(data: bytes, header_given: bool = True) -> Any:
    """orjson first (5x faster than json on a 28x28 image); what it refuses (NaN, integers over 64 bits) goes to
    json.loads, so what is accepted and every error message stay those of the json module. BadInput if neither."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # NaN, or not JSON at all: the json module decides (and words the error)
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as e:
            hint = ""
            if not header_given and b'"binary_data_size"' in data:
                hint = " (binary tensor data needs the Inference-Header-Content-Length header)"
            raise BadInput(f"body is not valid JSON: {e}{hint}") from None


def _plan_input(i: int, t: Any, seen: set, body: bytes, hlen: int | None, offset: int, max_rows: int | None
                ) -> tuple:
    """One input's (name, where, shape, datatype, JSON data, binary offset, binary size), checked; no data decoded."""
    if not isinstance(t, dict):
        raise BadInput(f"inputs[{i}] must be an object with name, shape, datatype and data, got {_short(t)}")
    name = t.get("name")
    if not isinstance(name, str):
        raise BadInput(f"inputs[{i}]: name must be a string, got {_short(name)}")
    where = f"input {name!r}"
    if name in seen:
        raise BadInput(f"{where} is given twice")
    seen.add(name)
    datatype, shape = t.get("datatype"), t.get("shape")
    if not isinstance(datatype, str):
        raise BadInput(f"{where}: datatype must be a string, got {_short(datatype)}")
    if not isinstance(shape, list) or any(type(d) is not int for d in shape):
        raise BadInput(f"{where}: shape must be a list of integers, got {_short(shape)}")
    _check_spec(where, datatype, shape)
    if max_rows is not None and shape and shape[0] > max_rows:
        raise TooManyRows(f"{shape[0]} rows in one request (input {name!r}); at most {max_rows}")
    size = _parameters(where, t.get("parameters")).get("binary_data_size")
    if size is None:
        if "data" not in t:
            raise BadInput(f"{where}: data is required (or parameters.binary_data_size with the binary "
                           f"tensor extension)")
        return (name, where, shape, datatype, t["data"], None, 0)
    if "data" in t:
        raise BadInput(f"{where} has both data and parameters.binary_data_size; send one")
    if type(size) is not int or size < 0:
        raise BadInput(f"{where}: binary_data_size must be a non-negative integer, got {_short(size)}")
    if datatype != "BYTES" and size != math.prod(shape) * WIRE[datatype].itemsize:
        raise BadInput(f"{where}: binary_data_size {size} does not match shape {shape} of {datatype} "
                       f"({math.prod(shape) * WIRE[datatype].itemsize} bytes)")
    if offset + size > len(body):
        if hlen is None:
            raise BadInput(f"{where}: binary_data_size {size} but the request has no binary part "
                           f"(no Inference-Header-Content-Length header)")
        raise BadInput(f"{where}: binary_data_size {size} runs past the end of the body ({len(body) - offset} "
                       f"bytes left after the JSON and the tensors before it)")
    return (name, where, shape, datatype, None, offset, size)


def parse_infer(body: bytes, header_length: int | str | bytes | None = None,
                max_rows: int | None = None) -> InferCall:
    """A request body (and its Inference-Header-Content-Length header, None if absent) -> an InferCall.
    BadInput (400) for any mistake; TooManyRows (413) when an input's declared first dimension is over
    `max_rows`, raised after the JSON part is read but before any tensor data is decoded."""
    if not isinstance(body, bytes):
        body = bytes(body)
    hlen = _header_length(header_length, len(body))
    req = parse_json(body if hlen is None else body[:hlen], hlen is not None)
    end = len(body) if hlen is None else hlen  # binary data lies in body[end:]
    if not isinstance(req, dict):
        raise BadInput(f"the body must be a JSON object with \"inputs\", got {type(req).__name__}")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadInput(f"id must be a string, got {_short(rid)}")
    params = _parameters("the request", req.get("parameters"))
    binary_all = params.get("binary_data_output", False)
    if not isinstance(binary_all, bool):
        raise BadInput(f"parameters.binary_data_output must be true or false, got {_short(binary_all)}")

    # pass 1: every input's name, datatype, shape and where its data is; nothing decoded yet
    inputs = req.get("inputs")
    if inputs is None:
        raise BadInput("inputs: field required (a non-empty list of input tensors)")
    if not isinstance(inputs, list) or not inputs:
        raise BadInput(f"inputs must be a non-empty list of input tensors, got {_short(inputs)}")
    plan, seen, offset = [], set(), end
    for i, t in enumerate(inputs):
        step = _plan_input(i, t, seen, body, hlen, offset, max_rows)
        plan.append(step)
        offset += step[6]
    if offset != len(body):
        raise BadInput(f"{len(body) - offset} bytes after the JSON part are not claimed by any input's "
                       f"binary_data_size")

    outputs, binary, as_json = _outputs(req.get("outputs"))

    # pass 2: decode
    arrays = {}
    for name, where, shape, datatype, data, start, size in plan:
        arrays[name] = (_from_json(where, shape, datatype, data) if start is None
                        else _from_binary(where, shape, datatype, body, start, size))
    return InferCall(rid, arrays, outputs, binary, binary_all, as_json)


def _outputs(outputs: Any) -> tuple[list[str] | None, set[str], set[str]]:
    if outputs is None:
        return None, set(), set()
    if not isinstance(outputs, list):
        raise BadInput(f"outputs must be a list of {{\"name\"}} objects, got {_short(outputs)}")
    names, binary, as_json = [], set(), set()
    for i, o in enumerate(outputs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise BadInput(f"outputs[{i}] must be an object with a string name, got {_short(o)}")
        name = o["name"]
        where = f"output {name!r}"
        if name in names:
            raise BadInput(f"{where} is asked for twice")
        p = _parameters(where, o.get("parameters"))
        if p.get("classification"):
            raise BadInput(f"{where}: the classification extension is not supported; ask for the tensor itself")
        flag = p.get("binary_data")
        if flag is not None and not isinstance(flag, bool):
            raise BadInput(f"{where}: binary_data must be true or false, got {_short(flag)}")
        if flag is True:
            binary.add(name)
        elif flag is False:
            as_json.add(name)
        names.append(name)
    return names or None, binary, as_json


# -------------------------------------------------------------------------------------- the infer response
def write_infer(model: str, version: str, id: str | None, tensors: list[tuple[str, np.ndarray, str]],
                binary: Collection[str] = (), binary_all: bool = False,
                as_json: Collection[str] = (), parameters: dict | None = None) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers. An output is binary when its name is in `binary`, or
    `binary_all` and it is not in `as_json`; the others are JSON data. `parameters`: the response's own (the
    protocol's optional $parameters object; here the rows' prediction ids)."""
    outputs, blobs = [], []
    for name, arr, datatype in tensors:
        if name in binary or (binary_all and name not in as_json):
            raw = pack(arr, datatype)
            outputs.append({"name": name, "datatype": datatype, "shape": list(arr.shape),
                            "parameters": {"binary_data_size": len(raw)}})
            blobs.append(raw)
        else:
            outputs.append(encode(name, arr, datatype))
    response = {"model_name": model, "model_version": version}
    if id is not None:
        response["id"] = id
    if parameters:
        response["parameters"] = parameters
    response["outputs"] = outputs
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, {"content-type": JSON_TYPE}
    return b"".join([head, *blobs]), {"content-type": BINARY_TYPE, HEADER: str(len(head))}


def example_request(inputs: list[dict], text: str | None = None) -> dict:
    """A valid infer body for a model's v2 inputs: one row, zeros (or `text` for BYTES)."""
    tensors = []
    for spec in inputs:
        shape = [1 if d in (-1, None) or isinstance(d, str) else d for d in spec["shape"]]
        n = math.prod(shape)
        data = [text or "hello"] * n if spec["datatype"] == "BYTES" else [0] * n
        if spec["datatype"].startswith("FP"):
            data = [0.0] * n
        tensors.append({"name": spec["name"], "shape": shape, "datatype": spec["datatype"], "data": data})
    return {"id": "42", "inputs": tensors}
