"""/docs: the request schemas of the routes that read raw bodies, and one example body per loaded model on every
POST route (each accepted by the server itself: tested)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .. import v2 as protocol
from ..deployment import ModelRepository
from .v2 import SCHEMAS

CLASSIFIERS = ("image-classification", "text-classification")


def examples(repo: ModelRepository) -> dict[str, dict]:
    """path -> {example name: {"summary", "value"}}."""
    ds = repo.serving()
    v1 = {d.name: {"summary": f"{d.name} ({d.task})", "value": {"input": d.predictor.example_input()}} for d in ds}
    text = repo.first_of_task("text-classification")
    default = {"text": {"summary": "a package description -> its section",
                        "value": {"input": text.predictor.example_input() if text else "sample text"}}}
    default.update({f"model={k}": {"summary": f'with "model": {k}', "value": {**v["value"], "model": k}}
                    for k, v in v1.items()})
    infer = {d.name: {"summary": f"{d.name} ({d.task})", "value": protocol.example_request(
        d.predictor.v2_inputs(), ex if isinstance(ex := d.predictor.example_input(), str) else None)} for d in ds}
    feedback = {d.name: {"summary": f"{d.name}: the input and its true class",
                         "value": {"input": d.predictor.example_input(), "label": d.predictor.post["labels"][0]}}
                for d in ds if d.task in CLASSIFIERS}
    return {"/v1/models/{name}/predict": v1, "/predict": default, "/v2/models/{name}/infer": infer,
            "/v2/models/{name}/versions/{version}/infer": infer, "/v1/models/{name}/feedback": feedback}


def document(api: FastAPI, repo: ModelRepository) -> None:
    def openapi() -> dict:
        if api.openapi_schema is None:
            spec = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in SCHEMAS:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            for path, exs in examples(repo).items():
                body = spec["paths"].get(path, {}).get("post", {}).get("requestBody")
                if body and exs:
                    body["content"]["application/json"]["examples"] = exs
            api.openapi_schema = spec
        return api.openapi_schema

    api.openapi = openapi
