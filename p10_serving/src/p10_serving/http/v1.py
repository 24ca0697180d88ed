"""The simple JSON API (v1) and the seed's POST /predict. The two POST routes normally never run: the hot path
answers them first with the same Service call (they document it in /docs, and serve it with --no-hot-path)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from .auth import PredictKey
from .context import Ctx

router = APIRouter(tags=["v1"])


class PredictRequest(BaseModel):
    """One raw input (`input`) or several (`instances`)."""

    model_config = ConfigDict(extra="forbid")
    input: Any = None
    instances: list[Any] | None = None


class PredictBody(PredictRequest):
    """What predict takes: an input or instances, and for the search model the number of hits `k`."""

    k: int | None = None


class DefaultPredictRequest(PredictBody):
    model: str | None = None


def body_doc(model: type[BaseModel]) -> dict:
    """A request body for /docs (the route reads the raw body itself; examples are added per loaded model)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


@router.post("/v1/models/{name}/predict", openapi_extra=body_doc(PredictBody), dependencies=[PredictKey],
             summary="The task's answer for a raw input (an image as a 2-D pixel array or a base64 PNG; a text; "
                     'a query or {"query", "k"})')
async def predict(request: Request, name: str, ctx: Ctx):
    start = time.perf_counter()
    model, body = await ctx.service.predict(name, await request.body(), start)
    request.scope["state"]["model"] = model
    return Response(body, media_type="application/json")


@router.post("/predict", openapi_extra=body_doc(DefaultPredictRequest), dependencies=[PredictKey],
             summary='The seed\'s API: a text -> the text classifier\'s answer (or any model with "model")')
async def predict_default(request: Request, ctx: Ctx):
    model, body = await ctx.service.predict_default(await request.body(), time.perf_counter())
    request.scope["state"]["model"] = model
    return Response(body, media_type="application/json")


@router.get("/v1/models", summary="The loaded models")
async def models(ctx: Ctx):
    return {"models": [d.describe(ctx.repo.default[d.name] == d.version) for d in ctx.repo]}


@router.get("/v1/models/{name}", summary="One model (default version) with an example input")
async def model(name: str, ctx: Ctx):
    d = ctx.repo.get(name)
    return {**d.describe(True), "example": {"input": d.predictor.example_input()}}
