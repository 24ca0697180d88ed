"""What the server holds: one `Deployment` per served version (its predictor, batcher, drift monitor and metrics),
and the `ModelRepository` of them (name -> version -> deployment, and each name's default version). The routes,
the lifecycle and the dashboard all go through these two objects."""

from __future__ import annotations

from dlm_core.predictors import BadInput, BatchOutput, Predictor

from .batcher import Batcher
from .config import ServeConfig
from .drift import DriftMonitor
from .metrics import Metrics


class ModelNotFound(Exception):
    """Unknown model or version: answer 404."""


class TooLarge(Exception):
    """Too many rows in one request: 413."""


class Deployment:
    """One served version. `start()` runs its batcher (inside the event loop); `infer(rows)` is the request path."""

    def __init__(self, predictor: Predictor, config: ServeConfig, metrics: Metrics):
        p = self.predictor = predictor
        self.name, self.version, self.task, self.config = p.name, p.version, p.task, config
        self.metrics = metrics.model(p.name, p.version, p.task, p.sha256)
        # models without a drift reference (the no-op model) have no monitor
        self.monitor = DriftMonitor.for_predictor(p, window=config.drift_window, min_rows=config.drift_min_rows,
                                                  every=config.drift_every) if hasattr(p, "bundle") else None
        self.batcher: Batcher | None = None

    def start(self) -> None:
        c = self.config
        self.batcher = Batcher(self.predictor.run, max_batch_size=c.max_batch_size, max_delay_ms=c.max_delay_ms,
                               queue_rows=c.queue_rows, timeout_ms=c.timeout_ms, batching=c.batching,
                               metrics=self.metrics, name=f"{self.name}:{self.version}",
                               on_output=self.monitor.update if self.monitor else None,
                               on_restart=self.metrics.restarts.inc)
        self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()

    def ready(self) -> bool:
        return self.batcher is not None and self.batcher.healthy()

    def check_rows(self, n: int, what: str = "rows") -> None:
        if n == 0:
            raise BadInput("the request holds no rows")
        if n > self.config.max_request_rows:
            raise TooLarge(f"{n} {what} in one request; at most {self.config.max_request_rows}")

    async def infer(self, rows: list) -> BatchOutput:
        self.check_rows(len(rows))
        return await self.batcher.submit(rows)

    def describe(self, default: bool) -> dict:
        p = self.predictor
        head, value = p.headline_metric
        return {"name": p.name, "version": p.version, "task": p.task, "sha256": p.sha256, "default": default,
                "metric": {head: value}, "predict": f"/v1/models/{p.name}/predict",
                "infer": f"/v2/models/{p.name}/versions/{p.version}/infer"}


class ModelRepository:
    """name -> version -> Deployment, and each name's default version (the newest by the manifest's `created`,
    or the last given). A swap is one assignment of the default: atomic for the event loop."""

    def __init__(self, predictors: list[Predictor], config: ServeConfig, metrics: Metrics):
        self.config, self.metrics = config, metrics
        self.models: dict[str, dict[str, Deployment]] = {}
        self.default: dict[str, str] = {}
        for p in predictors:
            self.models.setdefault(p.name, {})[p.version] = Deployment(p, config, metrics)
            best = self.models[p.name].get(self.default.get(p.name, ""))
            if best is None or created(p) >= created(best.predictor):
                self.default[p.name] = p.version

    def __iter__(self):
        return (d for versions in list(self.models.values()) for d in list(versions.values()))

    def get(self, name: str, version: str | None = None) -> Deployment:
        versions = self.models.get(name)
        if versions is None:
            raise ModelNotFound(f"no model named {name!r}; serving {sorted(self.models)}")
        if version is None:
            return versions[self.default[name]]
        if version not in versions:
            raise ModelNotFound(f"model {name!r} has no version {version!r}; serving {sorted(versions)}")
        return versions[version]

    def serving(self):
        """The default version of every model."""
        return [self.get(name) for name in sorted(self.models)]

    def first_of_task(self, task: str) -> Deployment | None:
        return next((d for d in self.serving() if d.task == task), None)

    async def add(self, p: Predictor) -> Deployment:
        """A new version (a retrained model): batcher and drift monitor running before it can get a request; not
        yet the default."""
        if p.version in self.models.get(p.name, {}):
            raise ValueError(f"model {p.name} version {p.version} is already loaded")
        d = Deployment(p, self.config, self.metrics)
        d.start()
        self.models.setdefault(p.name, {})[p.version] = d
        return d

    async def remove(self, name: str, version: str) -> None:
        """Unload a version that is not the default: new lookups no longer find it, its batcher stops."""
        if self.default.get(name) == version:
            raise ValueError(f"{name} {version} is the default version")
        d = self.models[name].pop(version)
        await d.stop()
        try:
            self.metrics.default_version.remove(name, version)
        except KeyError:
            pass

    def set_default(self, name: str, version: str) -> None:
        """Route new requests for `name` to `version`; requests already routed finish on the old one."""
        self.get(name, version)
        self.default[name] = version
        for d in self.models[name].values():
            self.metrics.default_version.labels(name, d.version).set(int(d.version == version))

    def ready(self) -> bool:
        return all(d.ready() for d in self)

    def start(self) -> None:
        for d in self:
            d.start()
        for name, version in self.default.items():
            self.set_default(name, version)

    async def stop(self) -> None:
        for d in self:
            await d.stop()


def created(p: Predictor) -> str:
    return str(p.manifest.get("created", ""))
