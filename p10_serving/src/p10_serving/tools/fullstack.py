"""run_fullstack: the whole system in one command, every stage a real process.

    train (run_cnn_train --preset quick|default)  ->  export (run_cnn_export, a dlm-bundle/1)
    ->  serve (run_serve with the drift monitor, feedback and the retraining hook run_cnn_retrain)
    ->  replay a seeded stream of held-out images (validation rows the drift reference never saw) at a fixed
        rate; after `--shift-after` rows the images shift (rotation, brightness or contrast); true labels come
        back `--label-delay` rows late as feedback
    ->  drift alert / accuracy drop  ->  retrain  ->  gate  ->  swap  ->  the live accuracy recovers.

`--task text` is the same loop for the Debian section classifier (fullstack_text.py): run_section_classifier
trains the first bundle, the stream is bookworm package descriptions, then after `--shift-after` rows the
packages new in trixie (`debian-packages-trixie-new`), and the server's retraining hook is run_section_retrain.
The task-specific pieces (the model's name, the first bundle, the stream's request bodies, the retrain command,
a held-out evaluation for the report) are one `Task`; everything else is shared.

It writes OUT/report.md with drift.png, accuracy.png and latency.png (the alert, the retrain and the swap
marked), OUT/fullstack.json with every number, and exits 1 if a stage fails: training or export fails, the
server does not get ready, no swap within the budget, or the accuracy does not recover. With `--no-shift` it is
the control: the same stream with no shift must end with no retrain at all (exit 1 if one starts).
Everything lands under OUT (its own artifacts/ and runs), never in the user's artifacts/.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dlm_core.errors import DlmError, cli_entry
from dlm_core.io import read_json, write_json, write_text
from dlm_core.net import free_port, wait_http_ready

from .calibration import TRANSFORMS
from .loadtest import open_loop
from .stages import StageFailed, Stream, Task, stage, tool

if TYPE_CHECKING:
    import httpx

MODEL = "fashion-cnn"
MARKERS = {"drift_alert": ("tab:orange", "drift alert"), "episode": ("tab:red", "criterion met"),
           "retrain_started": ("tab:purple", "retrain started"), "swap": ("tab:green", "swap"),
           "gate_rejected": ("black", "gate rejected"), "retrain_failed": ("black", "retrain failed"),
           "rollback": ("tab:brown", "rollback")}


def parse_shift(spec: str) -> tuple[str, float]:
    kind, _, size = spec.partition(":")
    if kind not in TRANSFORMS or not size:
        raise DlmError(f"--shift {spec!r}: use KIND:SIZE with KIND one of {sorted(TRANSFORMS)}, e.g. rotation:25")
    try:
        return kind, float(size)
    except ValueError:
        raise DlmError(f"--shift {spec!r}: the size must be a number") from None


# ------------------------------------------------------------------------------------------- the tasks
def image_task(args) -> Task:
    """Fashion-MNIST, the CNN of p03 (run_cnn_train, run_cnn_export, run_cnn_retrain), a rotation, brightness or
    contrast shift."""
    spec = args.shift or "rotation:25"
    shift = None if args.no_shift else parse_shift(spec)

    def retrain_command(a, out: Path) -> str:
        return f"{tool('run_cnn_retrain')} --runs-root {out / 'runs'} --epochs {a.retrain_epochs or 2}"

    return Task("image", MODEL, None if shift is None else spec, train_and_export,
                lambda a, classes: image_stream(a, shift), retrain_command)


def image_stream(args, shift: tuple[str, float] | None) -> Stream:
    x, y = stream_rows(args.seed, args.max_rows)
    kind, size = shift or (None, 0.0)

    def row(i: int) -> tuple[dict, bool]:
        shifted = kind is not None and i >= args.shift_after
        img = TRANSFORMS[kind](x[i:i + 1], size)[0] if shifted else x[i]
        return {"input": np.rint(img).astype(np.uint8).tolist()}, shifted

    return Stream(y, row)


def make_task(args) -> Task:
    """The task of --task, its defaults filled into args (--min-recovery, --min-feedback)."""
    if args.task == "text":
        from .fullstack_text import text_task

        task = text_task(args)
    else:
        task = image_task(args)
    args.min_recovery = task.min_recovery if args.min_recovery is None else args.min_recovery
    args.min_feedback = task.min_feedback if args.min_feedback is None else args.min_feedback
    return task


# ------------------------------------------------------------------------------------------- the stream
def stream_rows(seed: int, n: int, skip: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """`n` held-out images in a seeded order: validation rows after the first `skip` (those are the bundle's
    drift reference), cycled if more are needed."""
    from dlm_core.data import load_dataset

    val = load_dataset("fashion-mnist", seed=0).val
    pool = np.arange(skip, len(val.y))
    order = np.concatenate([np.random.default_rng([seed, k]).permutation(pool) for k in range(-(-n // len(pool)))])
    return val.x[order[:n]], val.y[order[:n]]


@dataclass
class Replay:
    """One replay's state, shared by the tasks of the stream on one event loop: the answers so far, the labels
    waiting for their delay, the tasks beside the stream (feedback posts, the poll) and the row a swap was seen at."""
    client: httpx.AsyncClient
    stream: Stream
    model: str
    label_delay: int
    post_swap_rows: int
    classes: list[str]
    deadline: float
    poll: Callable
    rows: list[dict] = field(default_factory=list)
    swap_row: int | None = None
    last_sent: int = -1
    next_poll: float = 0.0
    pending_labels: list[tuple[str, str]] = field(default_factory=list)
    background: set[asyncio.Task] = field(default_factory=set)
    poller: asyncio.Task | None = None
    t0: float = field(default_factory=time.perf_counter)
    t0_wall: float = field(default_factory=time.time)

    def __post_init__(self):
        self.y = self.stream.y

    def send(self, i: int, scheduled: float):
        """Row i is due: its (shifted) input, its label queued, a poll when one is due; the request."""
        self.last_sent = i
        body, shifted = self.stream.row(i)
        if len(self.pending_labels) >= self.label_delay + 25:  # labels of rows sent `label_delay` rows ago
            batch, self.pending_labels = self.pending_labels[:25], self.pending_labels[25:]
            self.spawn(self.send_labels(batch))
        if self.poller is None and time.perf_counter() - self.t0 >= self.next_poll:
            self.next_poll += 1.0
            self.poller = self.spawn(self.poll_once())
        return self.predict(i, body, shifted, scheduled)

    def stop(self, i: int) -> bool:
        return time.perf_counter() > self.deadline or (self.swap_row is not None
                                                       and i >= self.swap_row + self.post_swap_rows)

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def predict(self, i: int, body: dict, shifted: bool, scheduled: float):
        # latency from the actual send, not from the schedule (this is a replay, not a load test: on a loaded
        # machine the replay itself can fall behind its schedule, and that lag is the client's, not the
        # server's; it is kept as lag_s)
        import httpx

        sent = time.perf_counter()
        rec = {"i": i, "t": sent - self.t0, "lag_s": sent - scheduled, "shifted": shifted, "label": int(self.y[i])}
        try:
            r = await self.client.post(f"/v1/models/{self.model}/predict", json=body)
            rec["latency_ms"] = (time.perf_counter() - sent) * 1000
            rec["status"] = r.status_code
            if r.status_code == 200:
                out = r.json()
                rec.update(prediction=out["prediction"], version=out["version"],
                           correct=out["prediction"] == self.classes[int(self.y[i])])
                # the label comes back later by the answer's id (the input is not sent twice)
                self.pending_labels.append((out["prediction_id"], self.classes[int(self.y[i])]))
        except httpx.HTTPError as err:
            rec.update(latency_ms=(time.perf_counter() - sent) * 1000, status=type(err).__name__)
        self.rows.append(rec)

    async def send_labels(self, batch):
        import httpx

        try:
            r = await self.client.post(f"/v1/models/{self.model}/feedback", json={
                "prediction_ids": [b[0] for b in batch], "labels": [b[1] for b in batch]})
        except httpx.HTTPError as err:
            print(f"feedback failed: {type(err).__name__} {err}", flush=True)
            return
        if r.status_code != 200:
            print(f"feedback refused ({r.status_code}): {r.text[:200]}", flush=True)

    async def poll_once(self):
        try:
            events = await self.poll(self.client, time.perf_counter() - self.t0)
            if self.swap_row is None and any(e["kind"] == "swap" for e in events):
                self.swap_row = self.last_sent
                print(f"swap seen at row {self.swap_row}; {self.post_swap_rows} more rows", flush=True)
        finally:
            self.poller = None


async def replay(base: str, stream: Stream, *, model: str, rate: float, label_delay: int, post_swap_rows: int,
                 classes: list[str], timeout: float, deadline: float, poll: callable, token: str | None = None) -> dict:
    """Send row i at t0 + i / rate (open loop: loadtest.open_loop), each as one v1 predict request; row i's label
    goes back as feedback once row i + label_delay has been sent; the drift report and the events are polled
    about once a second, beside the stream. Stops `post_swap_rows` rows after a swap is seen (or at the end of
    the rows, or at `deadline`)."""
    import httpx

    # an idle connection is dropped by the client after 2 s, before uvicorn closes it at 5 s: reusing one the
    # server is closing fails the request with a ReadError (seen once in 1,600 requests)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout, headers=headers) as client:
        r = Replay(client, stream, model, label_delay, post_swap_rows, classes, deadline, poll)
        await open_loop(rate, len(stream.y), r.send, start=r.t0, stop=r.stop)
        await asyncio.gather(*r.background, return_exceptions=True)
        await poll(client, time.perf_counter() - r.t0)
    return {"rows": sorted(r.rows, key=lambda row: row["i"]), "swap_row": r.swap_row,
            "seconds": time.perf_counter() - r.t0, "t0_wall": r.t0_wall}


@dataclass
class Watch:
    """What the replay's poll sees: per drift report, the smallest Holm-adjusted p-value of each signal; the events."""
    model: str = MODEL
    drift: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    async def __call__(self, client, t: float) -> list[dict]:
        import httpx

        try:
            d = (await client.get(f"/v1/models/{self.model}/drift")).json()
            p = {}
            for tst in d.get("tests", []):
                if "p_raw" in tst:
                    p[tst["signal"]] = min(p.get(tst["signal"], 1.0), tst["value"])
            self.drift.append({"t": t, "verdict": d.get("verdict"), "version": d.get("version"), "p": p})
            since = self.events[-1]["time"] if self.events else 0
            new = (await client.get("/v1/events", params={"since": since})).json()
            self.events.extend(new["events"])
        except (httpx.HTTPError, ValueError) as err:
            print(f"poll failed: {err}", flush=True)
        return self.events


def screenshot(url: str, path: Path) -> str | None:
    """The live dashboard as a PNG, by headless Chromium (None, said, when Chromium is not installed)."""

    from .chromium import find_chromium, run_chromium

    if find_chromium() is None:
        print("no chromium: no dashboard screenshot (apt-get install chromium)", flush=True)
        return None
    with tempfile.TemporaryDirectory() as profile:
        try:
            run_chromium(url, profile, "--window-size=1700,820", f"--screenshot={path}")
        except TimeoutError as err:  # the picture is a convenience: the run's results do not depend on it
            print(f"no dashboard screenshot: {err}", flush=True)
    return str(path) if path.exists() else None


# ------------------------------------------------------------------------------------------- the report
def segments(rows: list[dict], swap_time: float | None, new_version: str | None) -> dict:
    """Accuracy before the shift, on the shifted stream before the swap, and of the swapped-in version after it."""
    ok = [r for r in rows if r.get("status") == 200]

    def acc(sel):
        sel = list(sel)
        return {"accuracy": float(np.mean([r["correct"] for r in sel])) if sel else None, "rows": len(sel)}

    out = {"before_shift": acc(r for r in ok if not r["shifted"])}
    if swap_time is None:
        out["shifted"] = acc(r for r in ok if r["shifted"])
    else:
        out["shifted_before_swap"] = acc(r for r in ok if r["shifted"] and r["t"] < swap_time)
        out["after_swap"] = acc(r for r in ok if r["t"] >= swap_time and r.get("version") == new_version)
    return out


def plot(out: Path, rows: list[dict], drift: list[dict], events: list[dict], t_start: float,
         shift_t: float | None, held_out: float) -> None:
    """drift.png, accuracy.png and latency.png, each with the shift and the events marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    marks = functools.partial(mark_events, events=events, t_start=t_start, shift_t=shift_t)
    ok = [r for r in rows if r.get("status") == 200]
    panels = {"drift.png": (drift_panel, drift), "accuracy.png": (accuracy_panel, ok, held_out),
              "latency.png": (latency_panel, ok)}
    for name, (panel, *data) in panels.items():
        fig, ax = plt.subplots(figsize=(9, 3.6))
        panel(ax, *data, marks=marks)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)


def mark_events(ax, events: list[dict], t_start: float, shift_t: float | None) -> None:
    """The shift's start and every event as vertical lines, one legend entry per kind."""
    if shift_t is not None:
        ax.axvline(shift_t, color="grey", ls="--", lw=1, label="shift starts")
    seen = set()
    for e in events:
        color, label = MARKERS.get(e["kind"], ("grey", e["kind"]))
        ax.axvline(e["time"] - t_start, color=color, lw=1.5, label=None if label in seen else label)
        seen.add(label)


def drift_panel(ax, drift: list[dict], marks) -> None:
    for sig, style in (("features", "-"), ("prediction", "-."), ("embedding", ":"), ("ood", "--")):
        pts = [(d["t"], d["p"][sig]) for d in drift if d["p"].get(sig) is not None]
        if pts:
            t, p = zip(*pts)
            ax.plot(t, np.maximum(p, 1e-6), style, label=f"{sig}: min p (Holm)")
    ax.axhline(0.005, color="red", lw=0.8, label="alert level 0.005")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the stream started")
    ax.set_ylabel("p-value (window)")
    marks(ax)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    ax.set_title("drift of the live window against the serving bundle's reference")


def accuracy_panel(ax, ok: list[dict], held_out: float, marks) -> None:
    t = np.array([r["t"] for r in ok])
    c = np.array([r["correct"] for r in ok], float)
    k = 200
    if len(c) >= k:
        ax.plot(t[k - 1:], np.convolve(c, np.ones(k) / k, "valid"), label=f"live accuracy (last {k} rows)")
    ax.axhline(held_out, color="k", lw=0.8, ls=":", label=f"held-out test accuracy {held_out:.3f}")
    marks(ax)
    ax.set_ylim(0, 1)
    ax.set_xlabel("seconds since the stream started")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("accuracy of the served answers (true labels known to the client)")


def latency_panel(ax, ok: list[dict], marks) -> None:
    t = np.array([r["t"] for r in ok])
    lat = np.array([r["latency_ms"] for r in ok])
    ax.plot(t, lat, ".", ms=2, alpha=0.4, label="request latency")
    if len(lat) >= 100:
        p99 = [np.percentile(lat[max(0, i - 100):i + 1], 99) for i in range(len(lat))]
        ax.plot(t, p99, lw=1, label="p99 of the last 100")
    marks(ax)
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the stream started")
    ax.set_ylabel("ms, from the actual send")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("latency (from each request's actual send) while it all happens")


def report_md(res: dict) -> str:
    seg = res["accuracy"]
    lines = [f"# run_fullstack --task {res.get('task', 'image')} ({res['model']}, {res['preset']} preset, "
             f"seed {res['seed']})", "",
             f"Verdict: **{res['verdict']}**" + (f": {res['failure']}" if res.get("failure") else ""), "",
             f"Stream: {res['rows_sent']} rows at {res['rate']:g} req/s, "
             + (f"shift `{res['shift']}` from row {res['shift_after']}" if res["shift"] else "no shift")
             + f", labels {res['label_delay']} rows late. Machine: {res['machine']}.", "",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in res["stages"].items()]
    lines += ["", "| segment | rows | accuracy |", "|---|---|---|"]
    for k, v in seg.items():
        a = "-" if v["accuracy"] is None else f"{v['accuracy']:.3f}"
        lines.append(f"| {k.replace('_', ' ')} | {v['rows']} | {a} |")
    lines += ["", f"Held-out test accuracy of the first bundle: {res['held_out_accuracy']:.4f}. "
              f"Latency p50 / p99 (from each request's actual send; the replay's largest lag behind its "
              f"schedule: {res['replay_lag_s']:.2f} s): {res['latency_ms']['p50']:.1f} / "
              f"{res['latency_ms']['p99']:.1f} ms; "
              f"non-2xx responses: {res['errors']}."]
    if res.get("shifted_test"):
        st = res["shifted_test"]
        lines += ["", f"Accuracy on {st['split']} ({st['rows']} rows, held out: never streamed, never trained on): "
                  + ", ".join(f"{v} {a:.4f}" for v, a in st["accuracy"].items()) + "."]
    lines += ["", "## Events", ""]
    for e in res["events"]:
        extra = {k: v for k, v in e.items() if k not in ("time", "kind", "model", "statistics", "gate")}
        lines.append(f"- t={e['time'] - res['t_start']:.1f} s **{e['kind']}** {extra}")
        if e.get("gate"):
            g = e["gate"]
            lines.append(f"  - gate: test {g['old_test_accuracy']:.4f} -> {g['new_test_accuracy']:.4f} "
                         f"(margin {g['margin']}), held-out feedback {g['old_feedback_accuracy']:.3f} -> "
                         f"{g['new_feedback_accuracy']:.3f} on {g['feedback_rows']} rows, McNemar "
                         f"+{g['mcnemar_gained']}/-{g['mcnemar_lost']} p={g['mcnemar_p']:.2g}")
    lines += ["", "![drift](drift.png)", "", "![accuracy](accuracy.png)", "", "![latency](latency.png)", ""]
    if res.get("dashboard_png"):
        lines += ["The live dashboard (GET /dashboard) at the end of the stream:", "", "![dashboard](dashboard.png)",
                  ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- main
def run(args) -> int:
    import httpx  # noqa: F401  (the tools extra: missing, fail now rather than after the training)

    from dlm_core.benchmark import machine

    task = make_task(args)  # bad flags fail here, before any training
    out = Path(args.out or f"runs/fullstack/{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_begin = time.perf_counter()
    env = {**os.environ, "DLM_ARTIFACTS": str(out / "artifacts")}
    stages: dict[str, float] = {}
    res = {"task": task.name, "model": task.model, "preset": args.preset, "seed": args.seed, "shift": task.shift,
           "shift_after": args.shift_after, "rate": args.rate, "label_delay": args.label_delay, "out": str(out),
           "machine": machine()}

    # 1-2. train and export (a rerun skips what is done)
    bundle = task.train(args, out, env, stages)
    manifest = read_json(bundle / "manifest.json")
    held_out = float(manifest["metrics"]["values"]["accuracy"])
    classes = manifest["postprocess"]["labels"]

    # 3-4. serve, with the retraining hook, and the stream
    watch = Watch(task.model)
    stream, res["dashboard_png"] = serve_and_stream(args, out, env, bundle, task, classes, watch, stages)

    # 5. verdict and report
    summarise(res, stream, watch.events, held_out, stages, t_begin)
    if task.evaluate:
        res["shifted_test"] = task.evaluate(bundle, watch.events)
    failure = judge(args, task, res, stream, watch.events)
    res["verdict"], res["failure"] = ("failed", failure) if failure else ("ok", None)
    shift_t = next((r["t"] for r in stream["rows"] if r["shifted"]), None)
    plot(out, stream["rows"], watch.drift, watch.events, stream["t0_wall"], shift_t, held_out)
    write_json(out / "fullstack.json", {**res, "drift": watch.drift, "requests": stream["rows"]})
    write_text(out / "report.md", report_md(res))
    for k, v in res["accuracy"].items():
        print(f"  accuracy {k.replace('_', ' ')}: {v['accuracy']} ({v['rows']} rows)")
    print(f"{res['verdict']}{': ' + failure if failure else ''}  ({res['total_seconds']:.0f} s; "
          f"report {out / 'report.md'})")
    return 1 if failure else 0


def train_and_export(args, out: Path, env: dict, stages: dict[str, float]) -> Path:
    """The first bundle (OUT/artifacts/fashion-cnn/v1): run_cnn_train then run_cnn_export, each skipped when
    done, a killed training resumed."""
    train_dir = out / "train"
    if not (train_dir / "results.json").exists() or "test_acc" not in read_json(train_dir / "results.json"):
        if (train_dir / "checkpoints").is_dir():  # a killed run: continue it with its own saved config
            cmd = [tool("run_cnn_train"), "--resume", str(train_dir)]
        else:
            cmd = [tool("run_cnn_train"), "--preset", args.preset, "--seed", str(args.seed), "--run-dir",
                   str(train_dir), *shlex.split(args.train_args)]
        stages["train"] = stage("train", cmd, out / "train.log", env)
    bundle = out / "artifacts" / MODEL / "v1"
    if not (bundle / "manifest.json").exists():
        stages["export"] = stage("export", [tool("run_cnn_export"), str(train_dir), "--name", MODEL, "--version", "v1"],
                                 out / "export.log", env)
    return bundle


def serve_command(args, bundle: Path, port: int, out: Path, retrain_cmd: str) -> list[str]:
    """run_serve on the bundle with the drift monitor and the retraining hook (`retrain_cmd EVENT`)."""
    return [tool("run_serve"), str(bundle), "--port", str(port), "--drift-window", str(args.drift_window),
            "--drift-min-rows", str(min(200, args.drift_window)), "--retrain-dir", str(out / "retrain"),
            "--retrain-command", retrain_cmd, "--retrain-min-feedback", str(args.min_feedback),
            "--retrain-cooldown", str(args.cooldown), "--log-level", "warning",
            "--state-dir", str(out / "state"), "--admin-token-file", str(out / "admin-token"),
            "--drift-interval-s", "0"]  # every window judged: the stream is slow enough, and the report shows each


def serve_and_stream(args, out: Path, env: dict, bundle: Path, task: Task, classes: list[str], watch: Watch,
                     stages: dict[str, float]) -> tuple[dict, str | None]:
    """Start the server, replay the stream against it, screenshot its dashboard, stop it: replay()'s result and
    the screenshot's path."""
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    serve_cmd = serve_command(args, bundle, port, out, task.retrain_command(args, out))
    token = secrets.token_hex(32)  # feedback is an admin route: this run's own token, readable by its user only
    (out / "admin-token").touch(mode=0o600)
    (out / "admin-token").write_text(token + "\n")
    print(f"[serve] {shlex.join(serve_cmd)}  (log: {out / 'serve.log'})", flush=True)
    t0 = time.perf_counter()
    # one thread each for ONNX Runtime and for the retrain run_serve starts: the server, the stream and the
    # retrain share 2 cores, and torch's default of one thread per core would fight the server for both
    server = subprocess.Popen(serve_cmd, stdout=open(out / "serve.log", "ab"), stderr=subprocess.STDOUT,
                              env={**env, "DLM_THREADS": "1"})
    try:
        try:
            wait_http_ready(f"{base}/v2/health/ready", timeout=120, proc=server)
        except DlmError as err:
            raise StageFailed(f"{err}; see {out / 'serve.log'}") from None
        stages["serve_ready"] = time.perf_counter() - t0
        stream = stream_to(base, args, task, classes, watch, token)
        stages["stream"] = stream["seconds"]
        return stream, screenshot(f"{base}/dashboard", out / "dashboard.png")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def stream_to(base: str, args, task: Task, classes: list[str], watch: Watch, token: str | None = None) -> dict:
    """The task's seeded stream of held-out rows, replayed against the server at `base` (replay()'s result)."""
    stream = task.stream(args, classes)
    print(f"[stream] {base}: up to {len(stream.y)} rows at {args.rate:g} req/s, "
          + (f"shift {task.shift} from row {args.shift_after}" if task.shift else "no shift"), flush=True)
    return asyncio.run(replay(base, stream, model=task.model, rate=args.rate,
                              label_delay=args.label_delay, post_swap_rows=args.post_swap_rows,
                              classes=classes, timeout=10.0, poll=watch,
                              deadline=time.perf_counter() + args.max_minutes * 60, token=token))


def summarise(res: dict, stream: dict, events: list[dict], held_out: float, stages: dict[str, float],
              t_begin: float) -> None:
    """The run's numbers into `res`: stages, accuracy per segment, lag, errors, latency percentiles."""
    rows = stream["rows"]
    swaps = [e for e in events if e["kind"] == "swap"]
    swap_t = swaps[0]["time"] - stream["t0_wall"] if swaps else None
    res.update(stages=stages, rows_sent=len(rows), events=events, t_start=stream["t0_wall"],
               held_out_accuracy=held_out, accuracy=segments(rows, swap_t, swaps[0]["version"] if swaps else None),
               replay_lag_s=max((r["lag_s"] for r in rows), default=0.0),
               errors=sum(r.get("status") != 200 for r in rows),
               latency_ms={k: float(np.percentile([r["latency_ms"] for r in rows], q)) for k, q in
                           (("p50", 50), ("p99", 99))}, total_seconds=time.perf_counter() - t_begin)


def judge(args, task: Task, res: dict, stream: dict, events: list[dict]) -> str | None:
    """Why the run failed, or None: the control retrained, a shift got no swap, the accuracy did not recover, or
    requests failed."""
    failure = None
    started = [e for e in events if e["kind"] == "retrain_started"]
    swaps = [e for e in events if e["kind"] == "swap"]
    min_recovery = args.min_recovery
    if task.shift is None:
        if started:
            failure = f"a retrain started with no shift ({started[0]['reason']})"
    elif not swaps:
        failure = ("no swap: " + ", ".join(e["kind"] for e in events)) if events else "no drift alert and no retrain"
        if stream["seconds"] >= args.max_minutes * 60:
            failure += f" (incomplete: the stream hit its --max-minutes {args.max_minutes:g} safety net)"
    else:
        seg = res["accuracy"]
        before, after = seg["shifted_before_swap"]["accuracy"], seg["after_swap"]["accuracy"]
        if before is None or after is None or after < before + min_recovery:
            failure = f"accuracy did not recover: {before} before the swap, {after} after (need +{min_recovery})"
    if res["errors"]:
        failure = failure or f"{res['errors']} requests failed"
    return failure


def parser():
    from dlm_core.config import ArgumentParser

    p = ArgumentParser(prog="run_fullstack", description="Train -> export -> serve -> a shifting stream -> drift "
                       "alert -> retrain -> gated swap -> recovery, every stage a real process; a report with plots. "
                       "Exit 1 if a stage fails.")
    p.add_argument("--task", default="image", choices=["image", "text"],
                   help="image: Fashion-MNIST and the CNN (p03); text: Debian package sections (p06) shifted to the "
                        "packages new in trixie (default: image)")
    p.add_argument("--preset", default="quick", choices=["tiny", "quick", "default"],
                   help="run_cnn_train preset, or run_section_classifier's (quick | default) for --task text "
                        "(default: quick, about 5 minutes in all)")
    p.add_argument("--train-args", default="", metavar="FLAGS",
                   help='more run_cnn_train (run_section_classifier) flags, e.g. "--train-subset 2000 --epochs 2" '
                        "(the tests' small run)")
    p.add_argument("--seed", type=int, default=0, help="training seed and stream order (default: 0)")
    p.add_argument("--out", default=None, help="output folder (default: runs/fullstack/<time>); a rerun resumes")
    p.add_argument("--shift", default=None, help="images: KIND:SIZE, KIND rotation|brightness|contrast "
                   "(default: rotation:25, degrees); text: trixie, the only one (the default)")
    p.add_argument("--no-shift", action="store_true", help="the control: no shift, and no retrain may start")
    p.add_argument("--shift-after", type=int, default=600, help="rows before the shift (default: 600)")
    p.add_argument("--rate", type=float, default=20.0, help="requests per second (default: 20)")
    p.add_argument("--label-delay", type=int, default=200, help="rows until a row's label arrives (default: 200)")
    p.add_argument("--post-swap-rows", type=int, default=600, help="rows streamed after the swap (default: 600)")
    p.add_argument("--max-rows", type=int, default=30_000, help="most rows streamed (default: 30000)")
    p.add_argument("--drift-window", type=int, default=300, help="run_serve --drift-window (default: 300)")
    p.add_argument("--min-feedback", type=int, default=None,
                   help="run_serve --retrain-min-feedback (default: 640 for images, 1000 for text)")
    p.add_argument("--cooldown", type=float, default=60.0, help="run_serve --retrain-cooldown (default: 60)")
    p.add_argument("--retrain-epochs", type=int, default=None,
                   help="run_cnn_retrain --epochs (default: 2) or run_section_retrain --epochs (default: the "
                        "serving bundle's)")
    p.add_argument("--min-recovery", type=float, default=None,
                   help="accuracy gain after the swap that counts as recovery (default: 0.1 for images, "
                        "0.05 for text)")
    p.add_argument("--max-minutes", type=float, default=10.0,
                   help="safety net: the stream stops after this long, and a run that had not swapped by then is "
                        "reported incomplete (default: 10)")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    return p


@cli_entry
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.rate <= 0 or args.max_rows < 2 or args.label_delay < 0 or args.shift_after < 0 or args.max_minutes <= 0:
        raise DlmError("need --rate > 0, --max-rows >= 2, --label-delay >= 0, --shift-after >= 0, --max-minutes > 0")
    return run(args)
