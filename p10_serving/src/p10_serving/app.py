"""The app, composed: the repository of deployments, the lifecycle, the FastAPI routers by surface, the guard, and
the raw-ASGI hot path in front of them all.

    POST /v1/models/{name}/predict       {"input": raw} or {"instances": [raw, ...]}        (http/v1.py)
    POST /predict                        {"input": "sample text", "model"?} (default: the text classifier)
    GET  /v1/models[/{name}]             what is loaded (and an example input)
    GET  /v2, /v2/health/live|ready, /v2/models/{m}[/versions/{v}][/ready]                (http/v2.py)
    POST /v2/models/{m}[/versions/{v}]/infer     tensors in (JSON or binary), tensors out, id echoed
    POST /v1/models/{name}/feedback|retrain|rollback, GET .../lifecycle|drift, /v1/events (http/admin.py)
    GET  /metrics, /dashboard, /v1/dashboard/data                                        (http/ops.py)
    GET  /docs                           OpenAPI, with an example body per model

Any mistake in a request is a 4xx with {"error": "..."} (http/errors.py): bad JSON 400, a field of the wrong
type 422, wrong tensor name/dtype/shape 400, unknown model/version 404, body over the limit 413, too many rows
413, a non-JSON content type 415, queue full 503 (+ Retry-After), timeout 504.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI

from dlm_core.predictors import Predictor

from . import __version__
from .config import RetrainPolicy, ServeConfig
from .dashboard import Timeline
from .deployment import ModelRepository
from .http import admin, errors, ops, v1, v2
from .http.auth import Auth
from .http.context import Context
from .http.docs import document
from .http.guard import Guard
from .http.hotpath import HotPath
from .lifecycle import Lifecycle
from .metrics import Metrics
from .predictions import PredictionLog
from .registry import load_verified
from .service import Service
from .store import MEMORY, Store

__all__ = ["RetrainPolicy", "ServeConfig", "create_app"]


def create_app(predictors: list[Predictor], config: ServeConfig | None = None, store: Store | None = None,
               auth: Auth | None = None, replica: str | None = None):
    """The ASGI app over verified predictors. config.hot_path=False serves predict/infer through FastAPI (same
    answers, more CPU per request: what the hot path saves, measured in the bench). Without a store, the state
    lives in memory (an SQLite database that dies with the process); without auth, every route is open."""
    config = config or ServeConfig()
    store = store or Store(MEMORY, config.retrain.feedback_rows, config.prediction_log_rows)
    metrics = Metrics()
    repo = ModelRepository(predictors, config, metrics)
    predictions = PredictionLog(store, config.prediction_log_sample)
    service = Service(repo, predictions)
    life = Lifecycle(repo, config.retrain, metrics, store, predictions, replica)
    ctx = Context(config, repo, service, life, metrics, Timeline(repo, metrics, life), store, auth or Auth())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        repo.start()
        await life.resume(load_verified)  # before the first request: the version a restart must serve
        loop = asyncio.get_running_loop()
        background = [loop.create_task(life.watch(), name="lifecycle"),
                      loop.create_task(ctx.timeline.run(), name="timeline"),
                      loop.create_task(predictions.run(), name="prediction-log")]
        yield
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await life.stop()
        await repo.stop()

    api = FastAPI(title="dlm serving", version=__version__, lifespan=lifespan,
                  description="The dlm bundles behind a dynamic batcher: a simple JSON API (v1), the KServe v2 "
                              "Open Inference Protocol REST surface, and Prometheus metrics at /metrics.")
    api.state.ctx = ctx
    for router in (v1.router, v2.router, admin.router, ops.router):
        api.include_router(router)
    errors.install(api)
    document(api, repo)
    known = set(repo.models)
    api.add_middleware(Guard, metrics=metrics, known=known, max_body_bytes=config.max_body_bytes)
    if not config.hot_path:
        return api
    app = HotPath(api, service, metrics, config.max_body_bytes, known, ctx.auth)
    app.state = api.state  # what tests and tools reach through the app
    return app
