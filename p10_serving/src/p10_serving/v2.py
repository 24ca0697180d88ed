"""The KServe v2 / Open Inference Protocol REST bodies: tensors in JSON (name, shape, datatype, data as a
flat row-major list or nested lists) to numpy arrays and back. Every mistake is a BadInput (400) that names
the tensor and what is wrong with it.

    request:  {"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data", "parameters"?}],
               "outputs"?: [{"name", "parameters"?}]}
    response: {"model_name", "model_version", "id"?, "outputs": [{"name", "shape", "datatype", "data"}]}
    error:    {"error": "..."}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from dlm_core.predictors import BadInput

DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
          "FP32": np.float32, "FP64": np.float64, "BYTES": object}


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = Field(description="the elements in row-major order, flat or nested")


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


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


def decode(t: RequestInput) -> np.ndarray:
    """One request tensor -> a numpy array of its shape and datatype."""
    where = f"input {t.name!r}"
    if t.datatype not in DTYPES:
        raise BadInput(f"{where}: unknown datatype {t.datatype!r}; one of {sorted(DTYPES)}")
    if any(d < 0 for d in t.shape):
        raise BadInput(f"{where}: shape {t.shape} has a negative dimension")
    flat = flatten(t.data)
    if len(flat) != math.prod(t.shape):
        raise BadInput(f"{where}: shape {t.shape} holds {math.prod(t.shape)} elements but data has {len(flat)}")
    if not set(map(type, flat)) <= JSON_TYPES[t.datatype]:  # one C-level pass over the elements
        if t.datatype == "BYTES":
            raise BadInput(f"{where}: BYTES data must be strings")
        kind = "booleans" if t.datatype == "BOOL" else "numbers" if t.datatype.startswith("FP") else "integers"
        raise BadInput(f"{where}: data does not match datatype {t.datatype} (JSON {kind} expected)")
    if t.datatype == "BYTES":
        arr = np.empty(len(flat), object)
        arr[:] = flat
        return arr.reshape(t.shape)
    try:
        with np.errstate(over="raise"):
            return np.asarray(flat, DTYPES[t.datatype]).reshape(t.shape)
    except (OverflowError, FloatingPointError, ValueError):
        raise BadInput(f"{where}: a value is out of range for {t.datatype}") from None


def encode(name: str, arr: np.ndarray, datatype: str) -> dict:
    """A numpy array -> a response tensor (flat row-major data)."""
    if arr.dtype == object:
        data = [x.decode() if isinstance(x, bytes) else str(x) for x in arr.ravel()]
    else:
        data = arr.astype(DTYPES[datatype], copy=False).ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": data}


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
