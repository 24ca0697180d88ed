"""Console scripts: run_serve (the service) and run_retrain_worker (the retraining worker).

Heavy imports (fastapi, uvicorn, onnxruntime) happen inside the mains, so `--help` is instant.
"""

from __future__ import annotations

import dataclasses
import gc
import ipaddress
import os
import shlex
import signal
import subprocess
import sys
import time

from dlm_core.config import ArgumentParser, add_config_args, config_from_args
from dlm_core.errors import DlmError, cli_entry

from .config import RetrainPolicy, ServeConfig


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
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per model (default: 1)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="uvicorn's log level (default: warning)")
    g = p.add_argument_group("state and security (README: the store, the threat model)")
    g.add_argument("--state-dir", default=os.environ.get("DLM_STATE_DIR"),
                   help="folder of the durable state (SQLite; created on first start, resumed on the next); "
                        "default $DLM_STATE_DIR, else the state lives in memory and dies with the process")
    g.add_argument("--store-url", default=os.environ.get("DLM_STORE_URL"),
                   help="postgresql://USER:PASSWORD@HOST/DB instead of --state-dir: one store that replicas share "
                        "(default $DLM_STORE_URL)")
    g.add_argument("--replica-id", default=None,
                   help="this replica's name in the store's lifecycle lease and events (default: HOST-PID)")
    g.add_argument("--admin-token-file", default=None,
                   help="file of the bearer token(s) that feedback, retrain, rollback and drift dumps need (one per "
                        "line; re-read when it changes); default $DLM_ADMIN_TOKEN")
    g.add_argument("--api-key-file", default=None,
                   help="file of API key(s) that predict/infer then need (default $DLM_API_KEY; none: open)")
    g.add_argument("--allow-open-admin", action="store_true",
                   help="start on a non-loopback --host without an admin token (anyone who reaches the port can "
                        "post feedback, retrain and roll back): a warning, not an error")
    add_config_args(p, ServeConfig, title="request path")
    add_config_args(p, RetrainPolicy, prefix="retrain_", title="retraining (README: retraining criteria)")
    return p


@cli_entry
def serve_main(argv: list[str] | None = None) -> int:
    args = serve_parser().parse_args(argv)
    if args.all and args.bundles or not (args.all or args.bundles or args.noop):
        raise DlmError("pass bundle folders or --all (not both)")
    if not 0 <= args.port < 65536 or args.threads < 0:
        raise DlmError("--port must be in 0..65535 and --threads >= 0")
    policy = config_from_args(RetrainPolicy, args, prefix="retrain_")
    config = dataclasses.replace(config_from_args(ServeConfig, args), retrain=policy)

    if args.state_dir and args.store_url:
        raise DlmError("pass --state-dir or --store-url, not both")
    from .http.auth import Auth

    auth = Auth.from_sources(args.admin_token_file, args.api_key_file)
    if not auth.admin.on and not is_loopback(args.host):
        if not args.allow_open_admin:
            raise DlmError(f"--host {args.host} is reachable from other machines and there is no admin token: pass "
                           f"--admin-token-file FILE (or set DLM_ADMIN_TOKEN), or --allow-open-admin to run open")
        print(f"WARNING: admin routes are open to anyone who reaches {args.host}:{args.port} (--allow-open-admin)",
              file=sys.stderr, flush=True)

    from dlm_core.bundle import artifacts_root

    from .noop import NoOp
    from .registry import all_bundles, load_models
    from .store import MEMORY, Store, redact

    store = Store(args.store_url or args.state_dir or MEMORY, config.retrain.feedback_rows, config.prediction_log_rows)
    # --all: the newest version of each bundle that the gate did not reject and that was not rolled back
    banned = {k for k, v in store.version_marks().items() if v in ("rejected", "rolled_back")}
    paths = all_bundles(args.artifacts or artifacts_root(), skip=banned) if args.all else args.bundles
    predictors = load_models(paths, threads=args.threads) if paths else []
    if args.noop:
        predictors.append(NoOp())

    import uvicorn
    from threadpoolctl import threadpool_limits

    from .app import create_app

    # numpy's BLAS on one thread: the drift statistics (in a worker thread) must not take the event loop's core
    threadpool_limits(1)
    app = create_app(predictors, config, store, auth, replica=args.replica_id)
    gc.freeze()  # what startup built (models, the app) lives as long as the server: keep it out of every GC pass
    for p in predictors:
        print(f"  {p.name} {p.version} ({p.task}) from {p.path}", flush=True)
    state = redact(store.where) if store.durable else "in memory (pass --state-dir to keep it)"
    admin = "need the token" if auth.admin.on else "open"
    print(f"  state: {state}; admin routes {admin}; predict {'needs an API key' if auth.api_key.on else 'open'}",
          flush=True)
    batching = f"max {config.max_batch_size} rows / {config.max_delay_ms:g} ms" if config.batching else "off"
    print(f"serving {len(predictors)} model(s) at http://{args.host}:{args.port} (batching {batching}; docs at "
          f"/docs, metrics at /metrics); Ctrl-C stops", flush=True)
    # uvicorn stops on SIGINT/SIGTERM: no new connections, in-flight requests finish, then the lifespan stops
    # every batcher (waiting requests get 503) and joins its worker thread
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=10,
                http="httptools", loop="uvloop", lifespan="on", access_log=False)
    return 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


if __name__ == "__main__":
    sys.exit(serve_main())
