"""The KServe v2 / Open Inference Protocol REST surface: health, metadata, readiness and infer (JSON tensors, or
the binary tensor extension). POST infer normally runs on the hot path; this route documents it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from .. import __version__
from ..v2 import InferRequest
from .auth import PredictKey
from .context import Ctx
from .guard import BINARY_HEADER

router = APIRouter(tags=["v2"])
SERVER_NAME = "dlm-serving"
EXTENSIONS = ["binary_tensor_data"]


@router.get("/v2", summary="Server metadata")
async def server():
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


@router.get("/v2/health/live", summary="The process answers")
async def live():
    return {"live": True}


@router.get("/v2/health/ready", summary="Every model verified and its batcher running")
async def ready(ctx: Ctx):
    ok = ctx.repo.ready()
    return JSONResponse({"ready": ok}, 200 if ok else 503)


@router.get("/v2/models/{name}", summary="Model metadata (default version)")
@router.get("/v2/models/{name}/versions/{version}", summary="Model metadata")
async def metadata(request: Request, name: str, ctx: Ctx, version: str | None = None):
    d = ctx.repo.get(name, version)
    request.scope["state"]["model"] = d.name
    return {"name": d.name, "versions": [d.version] if version else sorted(ctx.repo.models[d.name]),
            "platform": "onnxruntime_onnx", "inputs": d.predictor.v2_inputs(), "outputs": d.predictor.v2_outputs()}


@router.get("/v2/models/{name}/ready", summary="Model readiness (default version)")
@router.get("/v2/models/{name}/versions/{version}/ready", summary="Model readiness")
async def model_ready(request: Request, name: str, ctx: Ctx, version: str | None = None):
    d = ctx.repo.get(name, version)
    request.scope["state"]["model"] = d.name
    return JSONResponse({"name": d.name, "ready": d.ready()}, 200 if d.ready() else 503)


INFER_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/InferRequest"}}}}}


@router.post("/v2/models/{name}/infer", summary="Inference (default version)", openapi_extra=INFER_DOC,
             dependencies=[PredictKey])
@router.post("/v2/models/{name}/versions/{version}/infer", summary="Inference", openapi_extra=INFER_DOC,
             dependencies=[PredictKey])
async def infer(request: Request, name: str, ctx: Ctx, version: str | None = None):
    header = request.headers.get(BINARY_HEADER.decode())
    model, body, headers = await ctx.service.infer(name, version, await request.body(),
                                                   int(header) if header is not None else None)
    request.scope["state"]["model"] = model
    return Response(body, headers=headers)


SCHEMAS = [InferRequest]  # added to the OpenAPI components by app.py (the route reads raw bytes)
