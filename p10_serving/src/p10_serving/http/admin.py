"""The lifecycle surface: feedback, status, retrain, rollback, events, and the drift report."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from dlm_core.predictors import BadInput

from ..deployment import ModelNotFound
from .context import Ctx
from .v1 import PredictRequest

router = APIRouter()


class FeedbackRequest(PredictRequest):
    """One input and its true class (`input`, `label`) or several (`instances`, `labels`)."""

    label: Any = None             # a class name or index, checked by the lifecycle (pydantic would turn true into 1)
    labels: list[Any] | None = None


@router.post("/v1/models/{name}/feedback", tags=["lifecycle"],
             summary='Labelled feedback: {"input", "label"} or {"instances", "labels"} (class names or indices); '
                     "counts toward the live accuracy and becomes training data for a retrain")
async def feedback(request: Request, name: str, body: FeedbackRequest, ctx: Ctx):
    d = ctx.repo.get(name)
    request.scope["state"]["model"] = d.name
    if (body.input is None) == (body.instances is None):
        raise BadInput('send either "input" and "label", or "instances" and "labels"')
    items = [body.input] if body.instances is None else body.instances
    labels = [body.label] if body.instances is None else body.labels
    if labels is None or labels == [None] or len(labels) != len(items):
        raise BadInput(f"{len(items)} input(s) need as many labels, got "
                       f"{0 if labels is None or labels == [None] else len(labels)}")
    d.check_rows(len(items), "instances")
    return await ctx.life.add_feedback(d, items, labels)


@router.get("/v1/models/{name}/lifecycle", tags=["lifecycle"],
            summary="The serving version, live accuracy, the retraining episode, cooldown and rollback target")
async def lifecycle(name: str, ctx: Ctx):
    return ctx.life.status(ctx.repo.get(name).name)


@router.post("/v1/models/{name}/retrain", tags=["lifecycle"],
             summary="Start a retrain now (reason: manual) on the labelled feedback received so far")
async def retrain(name: str, ctx: Ctx):
    return await ctx.life.start_retrain(ctx.repo.get(name), "manual", None)


@router.post("/v1/models/{name}/rollback", tags=["lifecycle"],
             summary="Serve the previous version again (the one before the last swap or rollback)")
async def rollback(name: str, ctx: Ctx):
    return await ctx.life.rollback(ctx.repo.get(name).name)


@router.get("/v1/events", tags=["lifecycle"], summary="Lifecycle events: drift alerts, retrains, gates, swaps, "
            "rollbacks (since=UNIX time to get the newer ones)")
async def events(ctx: Ctx, since: float = 0.0):
    return {"events": [e for e in ctx.life.events if e["time"] > since]}


@router.get("/v1/models/{name}/drift", tags=["v1"], summary="Drift of the live window against the bundle's "
            "validation reference: every test, its threshold and verdict, as last computed by the lifecycle "
            "watcher (?fresh=1 computes one now; ?dump=1 also saves both windows)")
async def drift(request: Request, name: str, ctx: Ctx, version: str | None = None, dump: bool = False,
                fresh: bool = False):
    d = ctx.repo.get(name, version)
    request.scope["state"]["model"] = d.name
    m = d.monitor
    if m is None:
        raise ModelNotFound(f"model {d.name!r} has no drift reference")
    report = m.last_report
    if fresh or report is None:  # a report on demand, in a worker thread (never on the event loop)
        report = await asyncio.to_thread(m.evaluate)
        ctx.metrics.drift(report)
    report = dict(report)
    if dump:
        if not ctx.config.drift_dir:
            raise BadInput("dumps are off; start the server with --drift-dir FOLDER")
        report["dump"] = str(await asyncio.to_thread(m.dump, ctx.config.drift_dir))
    return report
