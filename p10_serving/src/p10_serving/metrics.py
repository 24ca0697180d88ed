"""Prometheus metrics (histograms, not summaries: they aggregate across processes and give any percentile
later with histogram_quantile). One private registry per app, so two apps in one process (the tests) never
share counters.

    dlm_request_duration_seconds{model}      arrival -> response, every request to a model route
    dlm_requests_total{model,code}           responses by HTTP status (model="_unknown": no such model)
    dlm_queue_wait_seconds{model,version}    arrival -> its first row enters a batch
    dlm_compute_seconds{model,version}       one batch execution (ONNX Runtime + post-processing)
    dlm_batch_size_rows{model,version}       rows per execution
    dlm_inference_rows_total{model,version}  rows executed  } their ratio is the mean batch size
    dlm_inference_executions_total{...}      executions     }
    dlm_queue_depth_rows{model,version}      rows waiting now
    dlm_model_info{model,version,task,sha256} 1 per loaded model
    dlm_drift_statistic{model,version,signal,statistic,feature}          a drift test's value (p-value or PSI)
    dlm_drift_threshold{model,version,signal,statistic,feature,level}    its warn / alert threshold
    dlm_drift_effect{model,version,signal,statistic,feature,effect}      its effect size (Wasserstein SDs, ...)
    dlm_drift_verdict{model,version,signal}  -1 no verdict yet, 0 ok, 1 warn, 2 alert (signal="overall" too)
    dlm_drift_window_rows{model,version}, dlm_drift_rows_seen{model,version}
    dlm_default_version{model,version}       1 for the version new requests go to, 0 for the others
    dlm_feedback_rows_total{model}           labelled rows received (POST .../feedback)
    dlm_live_accuracy{model,version}         accuracy on the last labelled rows answered by that version
    dlm_lifecycle_events_total{model,kind}   drift_alert, episode, retrain_started, retrain_failed,
                                             gate_rejected, swap, rollback
    dlm_batcher_restarts_total{model,version} batcher loops that died and were started again

The drift gauges are set by the one owner of drift statistics (the lifecycle watcher, when a window is judged):
a scrape only renders what is there.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .drift import LEVELS

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
EFFECTS = ("wasserstein_sd", "ks_d", "js_distance", "rate", "mmd2", "cosine_distance")


class ModelMetrics:
    """The series of one model, labels bound (what the batcher and the routes update)."""

    def __init__(self, m: Metrics, model: str, version: str):
        self.restarts = m.restarts.labels(model, version)
        self.queue_wait = m.queue_wait.labels(model, version)
        self.compute = m.compute.labels(model, version)
        self.batch_size = m.batch_size.labels(model, version)
        self.rows = m.rows.labels(model, version)
        self.executions = m.executions.labels(model, version)
        self.queue_depth = m.queue_depth.labels(model, version)

    def executed(self, rows: int, seconds: float) -> None:
        self.compute.observe(seconds)
        self.batch_size.observe(rows)
        self.rows.inc(rows)
        self.executions.inc()


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.bound: dict[tuple[str, int], tuple] = {}  # (model, code) -> its counter and histogram, labels bound
        self.request = Histogram("dlm_request_duration_seconds", "Request duration, arrival to response",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("dlm_queue_wait_seconds", "Wait in the batcher's queue before the first row "
                                    "runs", ["model", "version"], buckets=LATENCY_BUCKETS, registry=r)
        self.compute = Histogram("dlm_compute_seconds", "Duration of one batch execution", ["model", "version"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("dlm_batch_size_rows", "Rows per batch execution", ["model", "version"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.requests = Counter("dlm_requests", "Responses by model and HTTP status code", ["model", "code"],
                                registry=r)
        self.rows = Counter("dlm_inference_rows", "Rows executed", ["model", "version"], registry=r)
        self.executions = Counter("dlm_inference_executions", "Batch executions", ["model", "version"], registry=r)
        self.queue_depth = Gauge("dlm_queue_depth_rows", "Rows waiting in the batcher's queue", ["model", "version"],
                                 registry=r)
        drift = ["model", "version", "signal", "statistic", "feature"]
        self.drift_stat = Gauge("dlm_drift_statistic", "Drift test value (a p-value, Holm-adjusted, or a PSI)",
                                drift, registry=r)
        self.drift_threshold = Gauge("dlm_drift_threshold", "Drift test threshold", drift + ["level"], registry=r)
        self.drift_effect = Gauge("dlm_drift_effect", "Drift effect size behind a test's gate", drift + ["effect"],
                                  registry=r)
        self.drift_verdict = Gauge("dlm_drift_verdict", "Drift verdict: -1 none yet, 0 ok, 1 warn, 2 alert",
                                   ["model", "version", "signal"], registry=r)
        self.drift_window = Gauge("dlm_drift_window_rows", "Rows in the drift window", ["model", "version"],
                                  registry=r)
        self.drift_seen = Gauge("dlm_drift_rows_seen", "Rows the drift monitor has seen", ["model", "version"],
                                registry=r)
        self.default_version = Gauge("dlm_default_version", "1 for the version serving new requests",
                                     ["model", "version"], registry=r)
        self.feedback_rows = Counter("dlm_feedback_rows", "Labelled feedback rows", ["model"], registry=r)
        self.live_accuracy = Gauge("dlm_live_accuracy", "Accuracy on recent labelled feedback", ["model", "version"],
                                   registry=r)
        self.lifecycle_events = Counter("dlm_lifecycle_events", "Model lifecycle events", ["model", "kind"],
                                        registry=r)
        self.restarts = Counter("dlm_batcher_restarts", "Batcher loops that died and were restarted",
                                ["model", "version"], registry=r)
        self.info = Gauge("dlm_model_info", "A loaded model (value 1)", ["model", "version", "task", "sha256"],
                          registry=r)

    def model(self, name: str, version: str, task: str, sha256: str) -> ModelMetrics:
        self.info.labels(name, version, task, sha256).set(1)
        return ModelMetrics(self, name, version)

    def drift(self, report: dict) -> None:
        """Set the drift gauges from a DriftMonitor report."""
        m, v = report["model"], report["version"]
        self.drift_window.labels(m, v).set(report["window_rows"])
        self.drift_seen.labels(m, v).set(report["rows_seen"])
        verdicts = {**report["signals"], "overall": report["verdict"]}
        for signal, verdict in verdicts.items():
            self.drift_verdict.labels(m, v, signal).set(-1 if verdict is None else LEVELS[verdict])
        for t in report["tests"]:
            labels = (m, v, t["signal"], t["statistic"], t["feature"] or "")
            self.drift_stat.labels(*labels).set(t["value"])
            self.drift_threshold.labels(*labels, "warn").set(t["warn"])
            self.drift_threshold.labels(*labels, "alert").set(t["alert"])
            for effect in EFFECTS:
                if effect in t:
                    self.drift_effect.labels(*labels, effect).set(t[effect])

    def feedback(self, model: str, version: str, rows: int, accuracy: float | None) -> None:
        self.feedback_rows.labels(model).inc(rows)
        if accuracy is not None:
            self.live_accuracy.labels(model, version).set(accuracy)

    def lifecycle(self, model: str, kind: str) -> None:
        self.lifecycle_events.labels(model, kind).inc()

    def response(self, model: str, code: int, seconds: float) -> None:
        series = self.bound.get((model, code))
        if series is None:  # labels() takes a lock and builds a key: once per (model, code), not per request
            series = self.bound[model, code] = (self.requests.labels(model, str(code)), self.request.labels(model))
        series[0].inc()
        series[1].observe(seconds)

    def totals(self, model: str) -> tuple[float, float, list[tuple[float, float]]]:
        """(responses, non-2xx responses, [(bucket upper bound, cumulative count)]) of a model so far, read
        through prometheus_client's collect() (the dashboard samples it once a second)."""
        total = errors = 0.0
        for sample in self.requests.collect()[0].samples:
            if sample.name.endswith("_total") and sample.labels["model"] == model:
                total += sample.value
                errors += 0 if sample.labels["code"].startswith("2") else sample.value
        buckets = [(float(s.labels["le"]), s.value) for s in self.request.collect()[0].samples
                   if s.name.endswith("_bucket") and s.labels["model"] == model]
        return total, errors, buckets

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
