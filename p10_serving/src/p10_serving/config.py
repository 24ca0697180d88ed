"""Every knob of the server, once: two dataclasses whose fields become run_serve's flags (dlm_core.config), so no
default is written twice. Validation lives in __post_init__ (one clear line, exit 2 from the CLI)."""

from __future__ import annotations

import dataclasses

from dlm_core.config import check


def knob(default, help: str, **meta):
    """A dataclass field with its --help text (and optionally its own flag name, or cli=False)."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


@dataclasses.dataclass
class RetrainPolicy:
    """Feedback, retraining criteria, the gate and swaps (README: retraining criteria)."""

    dir: str | None = knob(None, "hand-off folder for retraining events and results (None: retraining off; feedback "
                                 "and live accuracy still work)", flag="--retrain-dir")
    command: str | None = knob(None, "run `CMD EVENT` here when a retrain starts, e.g. run_cnn_retrain (None: a "
                                     "run_retrain_worker watches --retrain-dir)", flag="--retrain-command")
    drift_windows: int = knob(2, "consecutive non-overlapping drift-alert windows that open an episode")
    accuracy_drop: float = knob(0.05, "live accuracy this far below the expected accuracy opens an episode")
    accuracy_window: int = knob(200, "labelled rows the live accuracy is computed over")
    accuracy_windows: int = knob(2, "consecutive low-accuracy windows that open an episode")
    min_feedback: int = knob(640, "labelled rows since the episode began before a retrain starts")
    max_feedback: int = knob(4000, "the most recent rows of those go to the event", cli=False)
    gate_share: float = knob(0.2, "share of them held out for the gate (every 1/share-th row)", cli=False)
    gate_margin: float = knob(0.01, "accuracy a candidate may lose on the fixed test set", flag="--gate-margin")
    gate_alpha: float = knob(0.05, "McNemar's level for 'better on the held-out feedback'", flag="--gate-alpha")
    gate_test_rows: int = knob(2000, "test rows the gate uses, 0 = all", flag="--gate-test-rows")
    cooldown_s: float = knob(60.0, "seconds without a new retrain after a swap, rejection or failure",
                             flag="--retrain-cooldown")
    timeout_s: float = knob(1800.0, "seconds a retrain may take", flag="--retrain-timeout")
    unload_grace_s: float = knob(30.0, "seconds after a swap or rollback before versions other than the serving "
                                       "one and the rollback target are unloaded", flag="--unload-grace")
    lease_s: float = knob(5.0, "replicas on one store: the lifecycle lease lasts this long unless renewed (a dead "
                               "leader's successor takes over within it)", flag="--lease-s")
    poll_s: float = knob(0.5, "seconds between two looks of the lifecycle watcher", cli=False)
    feedback_rows: int = knob(10_000, "labelled rows kept per model (28x28 float32 images: 31 MB)", cli=False)

    def __post_init__(self):
        check(not self.command or bool(self.dir), "--retrain-command needs --retrain-dir (where events and results go)")
        check(min(self.drift_windows, self.accuracy_window, self.accuracy_windows) >= 1 and self.min_feedback >= 2,
              "need --retrain-drift-windows, --retrain-accuracy-window and --retrain-accuracy-windows >= 1, "
              "--retrain-min-feedback >= 2")
        check(0 <= self.accuracy_drop < 1 and self.cooldown_s >= 0 and self.timeout_s > 0
              and self.unload_grace_s >= 0 and self.lease_s > 0, "need 0 <= --retrain-accuracy-drop < 1, "
              "--retrain-cooldown >= 0, --retrain-timeout > 0, --unload-grace >= 0, --lease-s > 0")
        check(0 < self.gate_alpha < 1 and self.gate_margin >= 0 and self.gate_test_rows >= 0,
              "need 0 < --gate-alpha < 1, --gate-margin >= 0, --gate-test-rows >= 0")
        check(0 < self.gate_share < 1 and self.max_feedback >= self.min_feedback and self.poll_s > 0
              and self.feedback_rows >= 1, "need 0 < gate_share < 1, max_feedback >= min_feedback, poll_s > 0")


@dataclasses.dataclass
class ServeConfig:
    """The request path: batching, limits, drift windows."""

    max_batch_size: int = knob(32, "rows per model execution")
    max_delay_ms: float = knob(5.0, "a batch leaves at most this long after its oldest request arrived")
    queue_rows: int = knob(1024, "rows waiting per model, all requests together, before 503 + Retry-After (an "
                                 "empty queue takes any request)")
    timeout_ms: float = knob(10_000, "per request, arrival to answer, then 504")
    batching: bool = knob(True, "dynamic batching (--no-batching: one request per execution, no waiting)")
    hot_path: bool = knob(True, "raw ASGI handlers on the predict/infer routes (--no-hot-path: through FastAPI, "
                                "same answers, more CPU per request)")
    max_body_bytes: int = knob(4 << 20, "request body limit, then 413")
    max_request_rows: int = knob(256, "rows in one request, then 413")
    drift_window: int = knob(500, "live rows per model the drift monitor compares with the bundle's reference")
    drift_min_rows: int = knob(200, "no drift verdict while the window holds fewer rows")
    drift_every: int = knob(50, "a drift report is computed at most once per this many new rows")
    drift_interval_s: float = knob(2.0, "and at most once per this many seconds (the retraining criteria's "
                                        "windows too: under heavy traffic the rows between them are skipped)")
    prediction_log_sample: float = knob(1.0, "share of predict requests whose answers go to the prediction log "
                                             "(feedback may name their prediction_id)")
    prediction_log_rows: int = knob(20_000, "answers kept in the log per model (the newest)")
    drift_dir: str | None = knob(None, "folder where GET /v1/models/NAME/drift?dump=1 writes the windows "
                                       "(None: dumps off)")
    retrain: RetrainPolicy = dataclasses.field(default_factory=RetrainPolicy, metadata={"cli": False})

    def __post_init__(self):
        check(min(self.max_batch_size, self.queue_rows, self.max_body_bytes, self.max_request_rows) >= 1,
              "--max-batch-size, --queue-rows, --max-body-bytes and --max-request-rows must be positive")
        check(self.max_delay_ms >= 0 and self.timeout_ms > 0, "need --max-delay-ms >= 0 and --timeout-ms > 0")
        check(0 <= self.prediction_log_sample <= 1 and self.prediction_log_rows >= 1,
              "need 0 <= --prediction-log-sample <= 1 and --prediction-log-rows >= 1")
        check(1 <= self.drift_min_rows <= self.drift_window and self.drift_every >= 1 and self.drift_interval_s >= 0,
              "need 1 <= --drift-min-rows <= --drift-window, --drift-every >= 1 and --drift-interval-s >= 0")
