"""Operations: Prometheus /metrics (renders what is there: no statistics are computed by a scrape), the live
dashboard and its data, and the index."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from .. import __version__
from ..dashboard import STATIC
from ..deployment import ModelNotFound
from .context import Ctx
from .v2 import SERVER_NAME

router = APIRouter(tags=["ops"])
STATIC_FILES = {"dashboard.html", "uPlot.iife.min.js", "uPlot.min.css"}


@router.get("/metrics", summary="Prometheus metrics (text format)")
async def metrics(ctx: Ctx):
    data, ctype = ctx.metrics.render()
    return Response(data, media_type=ctype)


@router.get("/dashboard", summary="Live dashboard: rates, latency, batch size, drift, accuracy, events")
async def dashboard():
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str):
    path = STATIC / name
    if name not in STATIC_FILES or not path.is_file():
        raise ModelNotFound(f"no static file {name!r}")
    return FileResponse(path)


@router.get("/v1/dashboard/data", summary="The dashboard's series (one point per model per second) and lifecycle "
            "events, newer than `since` (UNIX time)")
async def dashboard_data(ctx: Ctx, since: float = 0.0):
    return await asyncio.to_thread(ctx.timeline.data, since)  # the events come from the store


@router.get("/", include_in_schema=False)
async def index(ctx: Ctx):
    return {"name": SERVER_NAME, "version": __version__, "models": sorted(ctx.repo.models), "docs": "/docs"}
