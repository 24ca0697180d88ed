"""The request logic every predict/infer route shares, on raw bytes in and out: the raw-ASGI hot path
(http/hotpath.py) and the FastAPI routes that document it (http/v1.py, http/v2.py) both call it, so the two can
never answer differently. Every mistake raises an exception that http/errors.py maps to a 4xx."""

from __future__ import annotations

import time
from typing import Any

import orjson

from dlm_core.predictors import BadInput

from . import v2
from .deployment import Deployment, ModelNotFound, ModelRepository
from .predictions import PredictionLog

V1_KEYS = frozenset({"input", "instances", "k"})  # "k": the search model's flat body {"input": "text", "k": 5}
DEFAULT_KEYS = V1_KEYS | {"model"}
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class Invalid(Exception):
    """A body of the wrong shape (a field missing, of the wrong type, or unknown): 422."""


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=str, option=JSON_OPTIONS)


def v1_body(raw: bytes, allowed: frozenset) -> dict:
    body = v2.parse_json(raw)
    if not isinstance(body, dict):
        raise Invalid("body: Input should be a valid dictionary")
    extra = sorted(set(body) - allowed)
    if extra:
        raise Invalid("; ".join(f"{k}: Extra inputs are not permitted" for k in extra[:5]))
    if body.get("instances") is not None and not isinstance(body["instances"], list):
        raise Invalid("instances: Input should be a valid list")
    return body


class Service:
    def __init__(self, repo: ModelRepository, log: PredictionLog):
        self.repo, self.log = repo, log

    async def predict(self, name: str, raw: bytes, start: float) -> tuple[str, bytes]:
        """POST /v1/models/{name}/predict: (model, response body)."""
        d = self.repo.get(name)
        return d.name, await self.answer_v1(d, v1_body(raw, V1_KEYS), start)

    async def predict_default(self, raw: bytes, start: float) -> tuple[str, bytes]:
        """POST /predict: the text classifier, or the model named in "model"."""
        body = v1_body(raw, DEFAULT_KEYS)
        name = body.pop("model", None)
        if name is not None and not isinstance(name, str):
            raise Invalid("model: Input should be a valid string")
        d = self.repo.get(name) if name is not None else self.repo.first_of_task("text-classification")
        if d is None:
            raise ModelNotFound(f'no text-classification model is loaded; pass "model" (one of '
                                f"{sorted(self.repo.models)})")
        return d.name, await self.answer_v1(d, body, start)

    async def answer_v1(self, d: Deployment, body: dict, start: float) -> bytes:
        one, many = body.get("input"), body.get("instances")
        if (one is None) == (many is None):
            raise BadInput('send either "input" (one item) or "instances" (a list of items)')
        items = [one] if many is None else many
        d.check_rows(len(items), "instances")
        if "k" in body:
            if d.task != "text-retrieval":
                raise Invalid("k: Extra inputs are not permitted (only a search model takes k)")
            items = d.predictor.with_k(items, body["k"])
        rows = d.predictor.prepare_all(items, None if many is None else "instances")
        out = await d.infer(rows)
        latency = round((time.perf_counter() - start) * 1000, 3)
        ids = self.log.record(d, rows, items, out, latency)
        results = [{**r, "prediction_id": i} for r, i in zip(out.results, ids)]
        info = {"model": d.name, "version": d.version, "latency_ms": latency}
        return dumps({**results[0], **info} if many is None else {"predictions": results, **info})

    async def infer(self, name: str, version: str | None, raw: bytes, header_length: int | None,
                    start: float | None = None) -> tuple[str, bytes, dict[str, str]]:
        """POST /v2/models/{name}[/versions/{v}]/infer, JSON or binary tensors: (model, body, headers); the
        response's `parameters.prediction_ids` name its rows for feedback."""
        start = start or time.perf_counter()
        d = self.repo.get(name, version)
        call = v2.parse_infer(raw, header_length, max_rows=d.config.max_request_rows)
        specs = {s["name"]: s for s in d.predictor.v2_outputs()}
        wanted = call.outputs if call.outputs is not None else list(specs)
        unknown = [n for n in wanted if n not in specs]
        if unknown:
            raise BadInput(f"unknown output(s) {unknown}; this model has {list(specs)}")
        rows = d.predictor.rows_from_v2(call.inputs)
        out = await d.infer(rows)
        missing = [n for n in wanted if n not in out.tensors]
        if missing:
            raise BadInput(f"output(s) {missing} are not available for this request")
        tensors = [(n, out.tensors[n], specs[n]["datatype"]) for n in wanted]
        texts = call.inputs.get("text")  # what a text row was before tokenizing (the log keeps the text)
        items = texts.tolist() if texts is not None and d.task.startswith("text") else rows
        ids = self.log.record(d, rows, items, out, round((time.perf_counter() - start) * 1000, 3))
        body, headers = v2.write_infer(d.name, d.version, call.id, tensors, call.binary, call.binary_all, call.as_json,
                                       parameters={"prediction_ids": ids})
        return d.name, body, headers
