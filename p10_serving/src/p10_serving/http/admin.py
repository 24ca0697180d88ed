"""The lifecycle surface: feedback, status, retrain, rollback, events, and the drift report."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from dlm_core.predictors import BadInput

from ..deployment import ModelNotFound
from .auth import Admin, bearer
from .context import Ctx
from .v1 import PredictRequest

router = APIRouter()


class FeedbackRequest(PredictRequest):
    """True classes for inputs (`input` + `label`, `instances` + `labels`) or for logged predictions
    (`prediction_id` + `label`, `prediction_ids` + `labels`)."""

    label: Any = None             # a class name or index, checked by the lifecycle (pydantic would turn true into 1)
    labels: list[Any] | None = None
    prediction_id: str | None = None
    prediction_ids: list[Any] | None = None


@router.post("/v1/models/{name}/feedback", tags=["lifecycle"], dependencies=[Admin],
             summary='Labelled feedback: {"input", "label"}, {"instances", "labels"}, or for an answer already '
                     'given {"prediction_id", "label"} / {"prediction_ids", "labels"} (class names or indices); '
                     "counts toward the live accuracy and becomes training data for a retrain. A 2xx means the "
                     "rows are committed to the store")
async def feedback(request: Request, name: str, body: FeedbackRequest, ctx: Ctx):
    d = ctx.repo.get(name)
    request.scope["state"]["model"] = d.name
    given = [k for k in ("input", "instances", "prediction_id", "prediction_ids") if getattr(body, k) is not None]
    if len(given) != 1:
        raise BadInput('send one of "input", "instances", "prediction_id" or "prediction_ids", with the label(s)')
    one = given[0] in ("input", "prediction_id")
    items = [getattr(body, given[0])] if one else getattr(body, given[0])
    labels = [body.label] if one else body.labels
    if labels is None or labels == [None] or len(labels) != len(items):
        raise BadInput(f"{len(items)} {'prediction id' if 'prediction' in given[0] else 'input'}(s) need as many "
                       f"labels, got {0 if labels is None or labels == [None] else len(labels)}")
    d.check_rows(len(items), "instances")
    if "prediction" in given[0]:
        return await ctx.life.add_feedback_by_id(d, items, labels)
    return await ctx.life.add_feedback(d, items, labels)


@router.get("/v1/models/{name}/lifecycle", tags=["lifecycle"],
            summary="The serving version, live accuracy, the retraining episode, cooldown and rollback target")
async def lifecycle(name: str, ctx: Ctx):
    return await asyncio.to_thread(ctx.life.status, ctx.repo.get(name).name)


@router.post("/v1/models/{name}/retrain", tags=["lifecycle"], dependencies=[Admin],
             summary="Start a retrain now (reason: manual) on the labelled feedback received so far; on a replica "
                     "that does not lead, a request (202) that the leader acts on at its next look")
async def retrain(name: str, ctx: Ctx, response: Response):
    d = ctx.repo.get(name)
    if ctx.life.leading or not ctx.config.retrain.dir:
        return await ctx.life.start_retrain(d, "manual", None)
    response.status_code = 202
    return await ctx.life.request_retrain(d)


@router.post("/v1/models/{name}/rollback", tags=["lifecycle"], dependencies=[Admin],
             summary="Serve the previous version again (the one before the last swap or rollback)")
async def rollback(name: str, ctx: Ctx):
    return await ctx.life.rollback(ctx.repo.get(name).name)


@router.get("/v1/events", tags=["lifecycle"], summary="Lifecycle events: drift alerts, retrains, gates, swaps, "
            "rollbacks (since=UNIX time to get the newer ones)")
async def events(ctx: Ctx, since: float = 0.0):
    return {"events": await asyncio.to_thread(ctx.store.events, since)}


@router.get("/v1/models/{name}/drift", tags=["v1"], summary="Drift of the live window against the bundle's "
            "validation reference: every test, its threshold and verdict, as last computed by the lifecycle "
            "watcher (?fresh=1 computes one now; ?dump=1 also saves both windows)")
async def drift(request: Request, name: str, ctx: Ctx, version: str | None = None, dump: bool = False,
                fresh: bool = False, creds: HTTPAuthorizationCredentials | None = Depends(bearer)):
    if dump:  # writes files on the server: the admin's
        ctx.auth.check_admin(creds.credentials if creds else None)
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
