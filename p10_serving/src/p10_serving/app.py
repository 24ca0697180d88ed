"""The FastAPI app: the simple v1 API, the KServe v2 REST surface and /metrics over verified bundles.

    POST /v1/models/{name}/predict       {"input": raw} or {"instances": [raw, ...]}
                                         -> {prediction, confidence?, ..., model, version, latency_ms}
    POST /predict                        {"input": "sample text", "model"?} (default: the text classifier)
    GET  /v1/models[/{name}]             what is loaded (and an example input)
    GET  /v2, /v2/health/live|ready, /v2/models/{m}[/versions/{v}][/ready]
    POST /v2/models/{m}[/versions/{v}]/infer     tensors in, tensors out, id echoed
    GET  /v1/models/{name}/drift[?dump=1] the drift monitor's report (every test, threshold, verdict)
    GET  /metrics                        Prometheus text format
    GET  /docs                           OpenAPI, with an example body per model

Every request for a model goes through its batcher. Any mistake in a request is a 4xx with {"error": "..."}
saying what is wrong (never a traceback): bad JSON 400, a field of the wrong type 422, wrong tensor
name/dtype/shape 400, unknown model/version 404, body over the limit 413, too many rows 413, a non-JSON
content type 415, queue full 503 (+ Retry-After), timeout 504.
"""


import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
from typing import Annotated, Any

import orjson
from fastapi import Body, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from dlm_core.predictors import BadInput, Predictor

from . import __version__, v2
from .batcher import Batcher, QueueFull, RequestTimeout, ShuttingDown
from .dashboard import STATIC, Timeline
from .drift import DriftMonitor
from .lifecycle import Conflict, Lifecycle, RetrainPolicy
from .metrics import Metrics
from .registry import ModelNotFound, Registry

log = logging.getLogger("p10_serving")
STATIC_FILES = {"dashboard.html", "uPlot.iife.min.js", "uPlot.min.css"}
SERVER_NAME = "dlm-serving"


@dataclasses.dataclass
class ServeConfig:
    max_batch_size: int = 32        # rows per execution
    max_delay_ms: float = 5.0       # a batch leaves at most this long after its oldest request arrived
    queue_size: int = 256           # requests waiting per model before 503
    timeout_ms: float = 10_000      # per request, arrival to answer (504)
    batching: bool = True           # False: one request per execution, no waiting
    max_body_bytes: int = 4 << 20   # 413 above
    max_request_rows: int = 256     # rows in one request (413 above)
    drift_window: int = 500         # live rows per model the drift monitor compares with the reference
    drift_min_rows: int = 200       # no drift verdict below this many rows in the window
    drift_every: int = 50           # drift statistics are recomputed at most once per this many new rows
    drift_dir: str | None = None    # folder for ?dump=1 (None: dumps refused)
    retrain: RetrainPolicy = dataclasses.field(default_factory=RetrainPolicy)  # feedback, retraining, swaps


class TooLarge(Exception):
    """Too many rows in one request: 413."""


class PredictRequest(BaseModel):
    """One raw input (`input`) or several (`instances`)."""

    model_config = ConfigDict(extra="forbid")
    input: Any = None
    instances: list[Any] | None = None


class DefaultPredictRequest(PredictRequest):
    model: str | None = None


class FeedbackRequest(PredictRequest):
    """One input and its true class (`input`, `label`) or several (`instances`, `labels`)."""

    label: Any = None             # a class name or index, checked by the lifecycle (pydantic would turn true into 1)
    labels: list[Any] | None = None


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson (numpy values included). The model routes return it directly, which also skips
    FastAPI's jsonable_encoder walk over the answer: together the costliest steps of a response here."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=jsonable_encoder,
                            option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class FastJSONRequest(Request):
    """A request whose JSON body is parsed by orjson (5x faster than json on a 28x28 image); whatever orjson
    refuses goes to json.loads, so what is accepted and every error message stay those of the json module."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:  # NaN, integers over 64 bits, lone surrogates, or not JSON at all
                self._json = json.loads(body)
        return self._json


class FastJSONRoute(APIRoute):
    """FastAPI's route, handing its body parsing a FastJSONRequest."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(FastJSONRequest(request.scope, request.receive))

        return route


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=headers)


# ------------------------------------------------------------------------------------------- middleware
MODEL_PATH = re.compile(r"^/v[12]/models/([^/]+)/")
JSON_TYPE = re.compile(r"^application/([\w.+-]+\+)?json\s*(;|$)", re.I)


class Guard:
    """Pure ASGI middleware in front of every route: non-JSON bodies (415) and bodies over the limit (413)
    are refused before any parsing, and each response to a model route is counted and timed by model and
    status (so errors show in /metrics too)."""

    def __init__(self, app, metrics: Metrics, known: set[str], max_body_bytes: int):
        self.app, self.metrics, self.known, self.limit = app, metrics, known, max_body_bytes

    def label(self, scope) -> str | None:
        if scope["state"].get("model"):  # set by the route once it knows the model
            return scope["state"]["model"]
        m = MODEL_PATH.match(scope["path"])
        if m:
            return m.group(1) if m.group(1) in self.known else "_unknown"
        return "_unknown" if scope["path"] == "/predict" else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault("state", {})
        start, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                headers = dict(scope["headers"])
                if b"inference-header-content-length" in headers:
                    return await error(415, "binary tensor data (the KServe/Triton binary extension) is not "
                                            "supported; send the tensors as JSON (tritonclient: binary_data=False)")(
                        scope, receive, send_status)
                ctype = headers.get(b"content-type", b"").decode("latin-1")
                if ctype and not JSON_TYPE.match(ctype):
                    return await error(415, f"content type {ctype!r} is not supported; send application/json")(
                        scope, receive, send_status)
                if not ctype:  # KServe clients (tritonclient) send JSON without a content type: read it as JSON
                    scope["headers"] = [*scope["headers"], (b"content-type", b"application/json")]
                length = headers.get(b"content-length", b"0")
                if not length.isdigit() or int(length) > self.limit:
                    return await error(413, f"body over the limit of {self.limit} bytes")(scope, receive, send_status)
                body, more = b"", True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > self.limit:
                        return await error(413, f"body over the limit of {self.limit} bytes")(
                            scope, receive, send_status)
                receive = replay(body, receive)
            await self.app(scope, receive, send_status)
        finally:
            model = self.label(scope)
            if model:
                self.metrics.response(model, status, time.perf_counter() - start)


def replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then the connection's own messages."""
    sent = False

    async def receive_again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


# ------------------------------------------------------------------------------------------------ the app
def create_app(predictors: list[Predictor], config: ServeConfig | None = None) -> FastAPI:
    config = config or ServeConfig()
    registry = Registry(predictors)
    metrics = Metrics()
    batchers: dict[tuple[str, str], Batcher] = {}
    monitors: dict[tuple[str, str], DriftMonitor] = {}

    def add_monitor(p: Predictor) -> None:  # models without a drift reference (the no-op model) have none
        m = DriftMonitor.for_predictor(p, window=config.drift_window, min_rows=config.drift_min_rows,
                                       every=config.drift_every) if hasattr(p, "bundle") else None
        if m is not None:
            monitors[p.name, p.version] = m

    for p in registry:
        add_monitor(p)

    def start_batcher(p: Predictor) -> None:
        b = Batcher(p.run, max_batch_size=config.max_batch_size, max_delay_ms=config.max_delay_ms,
                    queue_size=config.queue_size, timeout_ms=config.timeout_ms, batching=config.batching,
                    metrics=metrics.model(p.name, p.version, p.task, p.sha256), name=f"{p.name}:{p.version}",
                    on_output=monitors[p.name, p.version].update if (p.name, p.version) in monitors else None)
        b.start()
        batchers[p.name, p.version] = b

    async def add_model(p: Predictor) -> None:
        """A new version (a retrained model): monitor and batcher running before it can get a request."""
        add_monitor(p)
        start_batcher(p)
        registry.add(p)

    life = Lifecycle(registry, monitors, config.retrain, metrics, add_model)
    timeline = Timeline(registry, batchers, monitors, life)
    metrics.listeners.append(timeline.response)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for p in registry:
            start_batcher(p)
        loop = asyncio.get_running_loop()
        background = [loop.create_task(life.watch(), name="lifecycle"),
                      loop.create_task(timeline.run(), name="timeline")]
        yield
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await life.stop()
        for b in batchers.values():
            await b.stop()
        batchers.clear()

    app = FastAPI(title="dlm serving", version=__version__, lifespan=lifespan,
                  description="The dlm bundles behind a dynamic batcher: a simple JSON API (v1), the KServe v2 "
                              "Open Inference Protocol REST surface, and Prometheus metrics at /metrics.")
    app.router.route_class = FastJSONRoute  # every route below parses JSON bodies with orjson
    app.state.registry, app.state.metrics, app.state.batchers, app.state.config = registry, metrics, batchers, config
    app.state.monitors, app.state.lifecycle = monitors, life
    app.add_middleware(Guard, metrics=metrics, known=set(registry.models), max_body_bytes=config.max_body_bytes)

    # -- errors: always {"error": "..."}
    @app.exception_handler(BadInput)
    async def bad_input(request: Request, exc: BadInput):
        return error(400, str(exc))

    @app.exception_handler(ModelNotFound)
    async def not_found(request: Request, exc: ModelNotFound):
        return error(404, str(exc))

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, exc: TooLarge):
        return error(413, str(exc))

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict):
        return error(409, str(exc))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull):
        return error(503, str(exc), {"Retry-After": "1"})

    @app.exception_handler(ShuttingDown)
    async def shutting_down(request: Request, exc: ShuttingDown):
        return error(503, str(exc), {"Retry-After": "1"})

    @app.exception_handler(RequestTimeout)
    async def timeout(request: Request, exc: RequestTimeout):
        return error(504, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        bad_json = [e for e in errs if e.get("type") == "json_invalid"]
        if bad_json:
            return error(400, f"body is not valid JSON: {bad_json[0].get('ctx', {}).get('error', bad_json[0]['msg'])}")
        where = lambda e: ".".join(str(x) for x in e["loc"] if x != "body") or "body"
        return error(422, "; ".join(f"{where(e)}: {e['msg']}" for e in errs[:5]))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        return error(500, f"internal error ({exc.__class__.__name__}); see the server log")

    # -- the request path shared by v1 and v2
    async def infer(request: Request, p: Predictor, rows: list):
        if not rows:
            raise BadInput("the request holds no rows")
        if len(rows) > config.max_request_rows:
            raise TooLarge(f"{len(rows)} rows in one request; at most {config.max_request_rows}")
        request.state.model = p.name
        return await batchers[p.name, p.version].submit(rows)

    def lookup(request: Request, name: str, version: str | None = None) -> Predictor:
        p = registry.get(name, version)
        request.state.model = p.name
        return p

    async def predict_v1(request: Request, p: Predictor, body: PredictRequest) -> FastJSONResponse:
        start = time.perf_counter()
        if (body.input is None) == (body.instances is None):
            raise BadInput('send either "input" (one item) or "instances" (a list of items)')
        items = [body.input] if body.instances is None else body.instances
        if len(items) > config.max_request_rows:
            raise TooLarge(f"{len(items)} instances in one request; at most {config.max_request_rows}")
        rows = p.prepare_all(items, "instances" if body.instances is not None else None)
        out = await infer(request, p, rows)
        info = {"model": p.name, "version": p.version,
                "latency_ms": round((time.perf_counter() - start) * 1000, 3)}
        if body.instances is None:
            return FastJSONResponse({**out.results[0], **info})
        return FastJSONResponse({"predictions": out.results, **info})

    # -- v1
    v1_examples = {p.name: {"summary": f"{p.name} ({p.task})", "value": {"input": p.example_input()}}
                   for p in (registry.get(n) for n in sorted(registry.models))}
    default_text = registry.first_of_task("text-classification")
    text_examples = {"text": {"summary": "a package description -> its section",
                              "value": {"input": default_text.example_input() if default_text else "sample text"}}}
    text_examples.update({f"model={k}": {"summary": f"with \"model\": {k}", "value": {**v["value"], "model": k}}
                          for k, v in v1_examples.items()})

    @app.post("/v1/models/{name}/predict", tags=["v1"],
              summary="The task's answer for a raw input (an image as a 2-D pixel array or a base64 PNG; a text; "
                      'a query or {"query", "k"})')
    async def v1_predict(request: Request, name: str,
                         body: Annotated[PredictRequest, Body(openapi_examples=v1_examples)]):
        return await predict_v1(request, lookup(request, name), body)

    @app.post("/predict", tags=["v1"], summary="The seed's API: a text -> the text classifier's answer "
              '(or any model with "model")')
    async def predict(request: Request, body: Annotated[DefaultPredictRequest, Body(openapi_examples=text_examples)]):
        if body.model is not None:
            p = lookup(request, body.model)
        elif default_text is not None:
            p = lookup(request, default_text.name)
        else:
            raise ModelNotFound(f'no text-classification model is loaded; pass "model" (one of '
                                f"{sorted(registry.models)})")
        return await predict_v1(request, p, PredictRequest(input=body.input, instances=body.instances))

    def describe(p: Predictor) -> dict:
        head, value = p.headline_metric
        return {"name": p.name, "version": p.version, "task": p.task, "sha256": p.sha256,
                "default": registry.default[p.name] == p.version, "metric": {head: value},
                "predict": f"/v1/models/{p.name}/predict", "infer": f"/v2/models/{p.name}/versions/{p.version}/infer"}

    @app.get("/v1/models", tags=["v1"], summary="The loaded models")
    async def v1_models():
        return {"models": [describe(p) for p in registry]}

    @app.get("/v1/models/{name}", tags=["v1"], summary="One model (default version) with an example input")
    async def v1_model(request: Request, name: str):
        p = lookup(request, name)
        return {**describe(p), "example": {"input": p.example_input()}}

    # -- KServe v2
    @app.get("/v2", tags=["v2"], summary="Server metadata")
    async def v2_server():
        return {"name": SERVER_NAME, "version": __version__, "extensions": []}

    @app.get("/v2/health/live", tags=["v2"], summary="The process answers")
    async def v2_live():
        return {"live": True}

    @app.get("/v2/health/ready", tags=["v2"], summary="Every model verified and its batcher running")
    async def v2_ready():
        ready = len(batchers) == sum(1 for _ in registry)
        return JSONResponse({"ready": ready}, 200 if ready else 503)

    @app.get("/v2/models/{name}", tags=["v2"], summary="Model metadata (default version)")
    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"], summary="Model metadata")
    async def v2_model(request: Request, name: str, version: str | None = None):
        p = lookup(request, name, version)
        return {"name": p.name, "versions": [p.version] if version else sorted(registry.models[p.name]),
                "platform": "onnxruntime_onnx", "inputs": p.v2_inputs(), "outputs": p.v2_outputs()}

    @app.get("/v2/models/{name}/ready", tags=["v2"], summary="Model readiness (default version)")
    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"], summary="Model readiness")
    async def v2_model_ready(request: Request, name: str, version: str | None = None):
        p = lookup(request, name, version)
        ready = (p.name, p.version) in batchers
        return JSONResponse({"name": p.name, "ready": ready}, 200 if ready else 503)

    v2_examples = {p.name: {"summary": f"{p.name} ({p.task})",
                            "value": v2.example_request(p.v2_inputs(), p.example_input()
                                                        if isinstance(p.example_input(), str) else None)}
                   for p in (registry.get(n) for n in sorted(registry.models))}

    @app.post("/v2/models/{name}/infer", tags=["v2"], summary="Inference (default version)")
    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["v2"], summary="Inference")
    async def v2_infer(request: Request, name: str,
                       body: Annotated[v2.InferRequest, Body(openapi_examples=v2_examples)],
                       version: str | None = None):
        p = lookup(request, name, version)
        arrays = {}
        for t in body.inputs:
            if t.name in arrays:
                raise BadInput(f"input {t.name!r} is given twice")
            arrays[t.name] = v2.decode(t)
        specs = {s["name"]: s for s in p.v2_outputs()}
        wanted = [o.name for o in body.outputs] if body.outputs else list(specs)
        unknown = [n for n in wanted if n not in specs]
        if unknown:
            raise BadInput(f"unknown output(s) {unknown}; this model has {list(specs)}")
        out = await infer(request, p, p.rows_from_v2(arrays))
        missing = [n for n in wanted if n not in out.tensors]
        if missing:
            raise BadInput(f"output(s) {missing} are not available for this request")
        response = {"model_name": p.name, "model_version": p.version,
                    "outputs": [v2.encode(n, out.tensors[n], specs[n]["datatype"]) for n in wanted]}
        if body.id is not None:
            response["id"] = body.id
        return FastJSONResponse(response)

    # -- drift: statistics are computed in a worker thread, never on the event loop
    async def drift_report(m: DriftMonitor) -> dict:
        report = await asyncio.to_thread(m.report)
        metrics.drift(report)
        return report

    @app.get("/v1/models/{name}/drift", tags=["v1"], summary="Drift of the live window against the bundle's "
             "validation reference: every test, its threshold and verdict (?dump=1 also saves both windows)")
    async def v1_drift(request: Request, name: str, version: str | None = None, dump: bool = False):
        p = lookup(request, name, version)
        m = monitors.get((p.name, p.version))
        if m is None:
            raise ModelNotFound(f"model {p.name!r} has no drift reference")
        report = dict(await drift_report(m))
        if dump:
            if not config.drift_dir:
                raise BadInput("dumps are off; start the server with --drift-dir FOLDER")
            report["dump"] = str(await asyncio.to_thread(m.dump, config.drift_dir))
        return report

    # -- the lifecycle: feedback, retraining, rollback (lifecycle.py)
    feedback_examples = {p.name: {"summary": f"{p.name}: the input and its true class",
                                  "value": {"input": p.example_input(), "label": p.post["labels"][0]}}
                         for p in (registry.get(n) for n in sorted(registry.models))
                         if p.task in ("image-classification", "text-classification")}

    @app.post("/v1/models/{name}/feedback", tags=["lifecycle"],
              summary='Labelled feedback: {"input", "label"} or {"instances", "labels"} (class names or indices); '
                      "counts toward the live accuracy and becomes training data for a retrain")
    async def v1_feedback(request: Request, name: str,
                          body: Annotated[FeedbackRequest, Body(openapi_examples=feedback_examples)]):
        p = lookup(request, name)
        if (body.input is None) == (body.instances is None):
            raise BadInput('send either "input" and "label", or "instances" and "labels"')
        items = [body.input] if body.instances is None else body.instances
        labels = [body.label] if body.instances is None else body.labels
        if labels is None or labels == [None] or len(labels) != len(items):
            raise BadInput(f"{len(items)} input(s) need as many labels, got "
                           f"{0 if labels is None or labels == [None] else len(labels)}")
        if not items:
            raise BadInput("the request holds no rows")
        if len(items) > config.max_request_rows:
            raise TooLarge(f"{len(items)} instances in one request; at most {config.max_request_rows}")
        return await life.add_feedback(p, items, labels)

    @app.get("/v1/models/{name}/lifecycle", tags=["lifecycle"],
             summary="The serving version, live accuracy, the retraining episode, cooldown and rollback target")
    async def v1_lifecycle(request: Request, name: str):
        return life.status(lookup(request, name).name)

    @app.post("/v1/models/{name}/retrain", tags=["lifecycle"],
              summary="Start a retrain now (reason: manual) on the labelled feedback received so far")
    async def v1_retrain(request: Request, name: str):
        p = lookup(request, name)
        return await life.start_retrain(p, "manual", None)

    @app.post("/v1/models/{name}/rollback", tags=["lifecycle"],
              summary="Serve the previous version again (the one before the last swap or rollback)")
    async def v1_rollback(request: Request, name: str):
        return await life.rollback(lookup(request, name).name)

    @app.get("/v1/events", tags=["lifecycle"], summary="Lifecycle events: drift alerts, retrains, gates, swaps, "
             "rollbacks (since=UNIX time to get the newer ones)")
    async def v1_events(since: float = 0.0):
        return {"events": [e for e in life.events if e["time"] > since]}

    # -- the live dashboard (dashboard.py, static/dashboard.html)
    @app.get("/dashboard", tags=["ops"], summary="Live dashboard: rates, latency, batch size, drift, accuracy, events")
    async def dashboard():
        return FileResponse(STATIC / "dashboard.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        path = STATIC / name
        if name not in STATIC_FILES or not path.is_file():
            raise ModelNotFound(f"no static file {name!r}")
        return FileResponse(path)

    @app.get("/v1/dashboard/data", tags=["ops"], summary="The dashboard's series (one point per model per second) "
             "and lifecycle events, newer than `since` (UNIX time)")
    async def dashboard_data(since: float = 0.0):
        return timeline.data(since)

    # -- metrics
    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics (text format)")
    async def prometheus():
        for m in list(monitors.values()):  # cached unless `drift_every` rows arrived since the last computation
            await drift_report(m)
        metrics.defaults(registry)
        data, ctype = metrics.render()
        return Response(data, media_type=ctype)

    @app.get("/", include_in_schema=False)
    async def index():
        return {"name": SERVER_NAME, "version": __version__, "models": sorted(registry.models), "docs": "/docs"}

    return app
