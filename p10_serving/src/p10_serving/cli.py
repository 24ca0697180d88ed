"""Console scripts: run_serve (the service) and run_loadtest (the open-loop load generator).

Heavy imports (fastapi, uvicorn, onnxruntime, httpx) happen inside the mains, so `--help` is instant.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from dlm_core.config import ArgumentParser
from dlm_core.errors import DlmError, cli_entry


def serve_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_serve", description="Serve model bundles (dlm-bundle/1) over HTTP: a simple JSON "
                       "API, the KServe v2 REST protocol and Prometheus /metrics, behind a dynamic batcher. Every "
                       "bundle must pass its checksums and self-check, or the server does not start.")
    p.add_argument("bundles", nargs="*", metavar="BUNDLE", help="bundle folders (artifacts/<name>/<version>)")
    p.add_argument("--all", action="store_true", help="serve the newest version of every bundle under --artifacts")
    p.add_argument("--noop", action="store_true",
                   help="also serve a built-in model 'noop' that does nothing (measures the server's own overhead)")
    p.add_argument("--artifacts", default=None, help="bundle root for --all (default: $DLM_ARTIFACTS or ./artifacts)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--max-batch-size", type=int, default=32, help="rows per model execution (default: 32)")
    p.add_argument("--max-delay-ms", type=float, default=5.0,
                   help="a batch leaves at most this long after its oldest request arrived (default: 5)")
    p.add_argument("--queue-size", type=int, default=256, help="requests waiting per model before 503 (default: 256)")
    p.add_argument("--timeout-ms", type=float, default=10_000, help="per-request timeout, then 504 (default: 10000)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per model (default: 1)")
    p.add_argument("--no-batching", action="store_true", help="run each request alone, as soon as the model is free")
    p.add_argument("--max-body-bytes", type=int, default=4 << 20, help="request body limit, then 413 (default: 4 MiB)")
    p.add_argument("--max-request-rows", type=int, default=256, help="rows in one request, then 413 (default: 256)")
    p.add_argument("--drift-window", type=int, default=500,
                   help="live rows per model the drift monitor compares with the bundle's reference (default: 500)")
    p.add_argument("--drift-min-rows", type=int, default=200,
                   help="no drift verdict while the window holds fewer rows (default: 200)")
    p.add_argument("--drift-every", type=int, default=50,
                   help="recompute drift statistics at most once per this many new rows (default: 50)")
    p.add_argument("--drift-dir", default=None,
                   help="folder where GET /v1/models/NAME/drift?dump=1 writes the windows (default: dumps off)")
    r = p.add_argument_group("retraining (README: retraining criteria)")
    r.add_argument("--retrain-dir", default=None, help="hand-off folder for retraining events and results "
                   "(default: retraining off; feedback and live accuracy still work)")
    r.add_argument("--retrain-command", default=None, metavar="CMD", help="run `CMD EVENT` here when a retrain "
                   "starts, e.g. run_cnn_retrain (default: none, a run_retrain_worker watches --retrain-dir)")
    r.add_argument("--retrain-drift-windows", type=int, default=2,
                   help="consecutive non-overlapping drift-alert windows that open an episode (default: 2)")
    r.add_argument("--retrain-accuracy-drop", type=float, default=0.05,
                   help="live accuracy this far below the held-out accuracy opens an episode (default: 0.05)")
    r.add_argument("--retrain-accuracy-window", type=int, default=200,
                   help="labelled rows the live accuracy is computed over (default: 200)")
    r.add_argument("--retrain-accuracy-windows", type=int, default=2,
                   help="consecutive low-accuracy windows that open an episode (default: 2)")
    r.add_argument("--retrain-min-feedback", type=int, default=640,
                   help="labelled rows since the episode began before a retrain starts (default: 640)")
    r.add_argument("--retrain-cooldown", type=float, default=60.0,
                   help="seconds without a new retrain after a swap, rejection or failure (default: 60)")
    r.add_argument("--retrain-timeout", type=float, default=1800.0, help="seconds a retrain may take (default: 1800)")
    r.add_argument("--gate-margin", type=float, default=0.01,
                   help="accuracy a candidate may lose on the fixed test set (default: 0.01)")
    r.add_argument("--gate-alpha", type=float, default=0.05,
                   help="McNemar's level for 'better on the held-out feedback' (default: 0.05)")
    r.add_argument("--gate-test-rows", type=int, default=2000, help="test rows the gate uses, 0 = all (default: 2000)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="uvicorn's log level (default: warning)")
    return p


def retrain_policy(args):
    from .lifecycle import RetrainPolicy

    if args.retrain_command and not args.retrain_dir:
        raise DlmError("--retrain-command needs --retrain-dir (where events and results go)")
    if min(args.retrain_drift_windows, args.retrain_accuracy_window, args.retrain_accuracy_windows) < 1 \
            or args.retrain_min_feedback < 2:
        raise DlmError("need --retrain-drift-windows, --retrain-accuracy-window and --retrain-accuracy-windows >= 1, "
                       "--retrain-min-feedback >= 2")
    if not 0 <= args.retrain_accuracy_drop < 1 or args.retrain_cooldown < 0 or args.retrain_timeout <= 0:
        raise DlmError("need 0 <= --retrain-accuracy-drop < 1, --retrain-cooldown >= 0, --retrain-timeout > 0")
    if not 0 < args.gate_alpha < 1 or args.gate_margin < 0 or args.gate_test_rows < 0:
        raise DlmError("need 0 < --gate-alpha < 1, --gate-margin >= 0, --gate-test-rows >= 0")
    return RetrainPolicy(dir=args.retrain_dir, command=args.retrain_command, drift_windows=args.retrain_drift_windows,
                         accuracy_drop=args.retrain_accuracy_drop, accuracy_window=args.retrain_accuracy_window,
                         accuracy_windows=args.retrain_accuracy_windows,
                         min_feedback=args.retrain_min_feedback, cooldown_s=args.retrain_cooldown,
                         timeout_s=args.retrain_timeout, gate_margin=args.gate_margin, gate_alpha=args.gate_alpha,
                         gate_test_rows=args.gate_test_rows)


@cli_entry
def serve_main(argv: list[str] | None = None) -> int:
    args = serve_parser().parse_args(argv)
    if args.all and args.bundles or not (args.all or args.bundles or args.noop):
        raise DlmError("pass bundle folders or --all (not both)")
    for flag in ("max_batch_size", "queue_size", "max_body_bytes", "max_request_rows", "port"):
        if getattr(args, flag) < (0 if flag == "port" else 1):
            raise DlmError(f"--{flag.replace('_', '-')} must be positive")
    if not 1 <= args.drift_min_rows <= args.drift_window or args.drift_every < 1:
        raise DlmError("need 1 <= --drift-min-rows <= --drift-window and --drift-every >= 1")
    if args.max_delay_ms < 0 or args.timeout_ms <= 0 or args.threads < 0:
        raise DlmError("--max-delay-ms and --threads must be >= 0, --timeout-ms > 0")

    policy = retrain_policy(args)
    from dlm_core.bundle import artifacts_root

    from .registry import NoOp, all_bundles, load_models

    paths = all_bundles(args.artifacts or artifacts_root()) if args.all else args.bundles
    predictors = load_models(paths, threads=args.threads) if paths else []
    if args.noop:
        predictors.append(NoOp())

    import uvicorn

    from .app import ServeConfig, create_app

    config = ServeConfig(max_batch_size=args.max_batch_size, max_delay_ms=args.max_delay_ms,
                         queue_size=args.queue_size, timeout_ms=args.timeout_ms, batching=not args.no_batching,
                         max_body_bytes=args.max_body_bytes, max_request_rows=args.max_request_rows,
                         drift_window=args.drift_window, drift_min_rows=args.drift_min_rows,
                         drift_every=args.drift_every, drift_dir=args.drift_dir, retrain=policy)
    app = create_app(predictors, config)
    for p in predictors:
        print(f"  {p.name} {p.version} ({p.task}) from {p.path}", flush=True)
    batching = "off" if args.no_batching else f"max {args.max_batch_size} rows / {args.max_delay_ms:g} ms"
    print(f"serving {len(predictors)} model(s) at http://{args.host}:{args.port} (batching {batching}; docs at "
          f"/docs, metrics at /metrics); Ctrl-C stops", flush=True)
    # uvicorn stops on SIGINT/SIGTERM: no new connections, in-flight requests finish, then the lifespan stops
    # every batcher (waiting requests get 503) and joins its worker thread
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=10)
    return 0


@cli_entry
def worker_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_retrain_worker", description="Watch a retraining hand-off folder (run_serve "
                       "--retrain-dir) and run the retrainer on every event without a result, oldest first: the "
                       "retraining worker of docker/compose.yml, when the server runs no hook itself.")
    p.add_argument("dir", help="the hand-off folder (events/, feedback/, results/, logs/)")
    p.add_argument("--command", default="run_cnn_retrain", help="retrainer, run as `CMD EVENT` (default: "
                   "run_cnn_retrain)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the folder (default: 2)")
    p.add_argument("--once", action="store_true", help="handle the pending events, then exit")
    args = p.parse_args(argv)

    from dlm_core.retrain import folders, pending, read_event, write_result

    # as a container's PID 1, SIGTERM has no default action: make it stop the worker (a retrain in progress
    # is a child process and gets the signal from the container runtime too)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    dirs = folders(args.dir)
    print(f"watching {dirs['events']} (retrainer: {args.command}); Ctrl-C stops", flush=True)
    while True:
        for path in pending(args.dir):
            event = read_event(path)
            print(f"retraining for event {event['id']} ({event['model']}, {event['reason']})", flush=True)
            with open(dirs["logs"] / f"{event['id']}.log", "ab") as log:
                cmd = [*shlex.split(args.command), str(path)]
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
            if not (dirs["results"] / path.name).exists():  # the retrainer died before it could say so
                write_result(event, error=f"{args.command} exited with code {rc} and wrote no result; see "
                                          f"{dirs['logs'] / (event['id'] + '.log')}")
            print(f"event {event['id']}: exit code {rc}", flush=True)
        if args.once:
            return 0
        time.sleep(args.poll)


def loadtest_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_loadtest", description="Open-loop load test of a local run_serve: a fixed offered "
                       "rate, latency from each request's scheduled send time, warm-up then a measured window. "
                       "Loopback addresses only.")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (default: http://127.0.0.1:8000)")
    p.add_argument("--model", default=None, help="model to load (default: the first the server lists)")
    p.add_argument("--body", default=None, help="JSON body to POST (default: the model's example input)")
    p.add_argument("--path", default=None, help="route to POST (default: /v1/models/MODEL/predict)")
    p.add_argument("--rate", type=float, default=50.0, help="offered requests per second (default: 50)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds (default: 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds, not counted (default: 1)")
    p.add_argument("--max-requests", type=int, default=20_000, help="hard cap on requests sent (default: 20000)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds (default: 10)")
    p.add_argument("--connections", type=int, default=256, help="max open connections (default: 256)")
    p.add_argument("--out", default=None, help="folder for loadtest.json and loadtest.png (default: none)")
    p.add_argument("--wait-ready", type=float, default=0.0, metavar="S",
                   help="first wait up to S seconds for the server to report ready (default: 0)")
    return p


@cli_entry
def loadtest_main(argv: list[str] | None = None) -> int:
    args = loadtest_parser().parse_args(argv)

    import httpx

    from . import loadtest

    base = args.url.rstrip("/")
    loadtest.check_loopback(base)
    if args.duration > 600 or args.max_requests < 1:
        raise DlmError("--duration is at most 600 s and --max-requests at least 1")
    if args.wait_ready:
        loadtest.wait_ready(base, args.wait_ready)
    try:
        model = args.model or httpx.get(f"{base}/v1/models", timeout=5).json()["models"][0]["name"]
        if args.body is not None:
            body = json.loads(args.body)
        else:
            r = httpx.get(f"{base}/v1/models/{model}", timeout=5)
            if r.status_code != 200:
                raise DlmError(f"the server says: {r.json().get('error', r.text)}")
            body = r.json()["example"]
    except httpx.HTTPError as err:
        raise DlmError(f"cannot reach {base}: {err}") from None
    except json.JSONDecodeError as err:
        raise DlmError(f"--body is not valid JSON: {err}") from None
    url = base + (args.path or f"/v1/models/{model}/predict")
    print(f"loading {url} at {args.rate:g} req/s for {args.warmup:g} s warm-up + {args.duration:g} s", flush=True)
    result = asyncio.run(loadtest.run_load(url, body, args.rate, args.duration, args.warmup, args.max_requests,
                                           args.timeout, args.connections))
    result.update(url=url, model=model)
    print(loadtest.summary(result))
    if args.out:
        from dlm_core.io import write_json

        out = Path(args.out)
        write_json(out / "loadtest.json", result)
        loadtest.plot(result, out / "loadtest.png", title=f"{model}: " + loadtest.summary(result).split("\n")[1])
        print(f"wrote {out / 'loadtest.json'} and {out / 'loadtest.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(serve_main())
