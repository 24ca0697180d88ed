"""p10_serving bench: what the service costs and what dynamic batching buys, side by side in one run.

1. ONNX Runtime vs torch eager, batch 1 and 64, for every bundle whose torch model can be rebuilt here (a
   bundle whose torch model can be rebuilt (TORCH_LOADERS: from the bundle's weights, or for p06 from the run
   named in its provenance); others are reported as skipped);
2. saturation throughput of run_serve on the fashion-cnn bundle, batched vs --no-batching: open-loop ramps of
   offered rates, the two servers' steps interleaved; saturation = the best 2xx/s achieved with >= 99% success
   (goal: batched >= 3x);
3. p50/p99 of the batched server at half the unbatched saturation (goal: p99 <= 25 ms on 2 cores, 0 errors);
4. the server's own overhead: the built-in no-op model's p50/p99 (run_serve --noop --no-batching).

Beside them, the evidence of where the time goes: the model's own ceiling (ONNX Runtime's ms per row at batch
1 and 32: the most batching can buy here), the CPU each load step cost the server, the load generator and the
rest of the machine (another session may share it), and a cross-check of run_loadtest against `wrk` (closed
loop, C, its own process) on the same servers when wrk is installed.

The load generator is run_loadtest's own (open loop, latency from the scheduled send time, raw asyncio HTTP/1.1)
in its own process, so it does not share the bench's interpreter; each server is a run_serve subprocess on
127.0.0.1. Without a fashion-cnn bundle a toy one stands in (and the result says so). JSON to
bench/results/p10_serving.json, plots beside it.

    .venv/bin/python -P bench/p10_serving.py [--bundle artifacts/fashion-cnn/<v>] [--step-seconds 3]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dlm_core.benchmark import interleaved_medians, machine, results_dir, unshadow, write_result

BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------ 1. ORT vs torch eager
def torch_p03(bundle):
    """fashion-cnn: p03's model from weights.pt, wrapped like its export (image -> logits, embedding)."""
    import torch

    from p03_cnn.export import ServingGraph
    from p03_cnn.model import build_model

    cfg = bundle.manifest["provenance"]["config"]
    model = build_model(cfg["arch"], len(bundle.manifest["postprocess"]["labels"]), cfg["width"], cfg["blocks"],
                        cfg.get("dropout", 0.0))
    model.load_state_dict(torch.load(bundle.file("weights.pt"), weights_only=True))
    return ServingGraph(model).eval(), "model"


def torch_p05(bundle):
    """translator: the encoder graph (source ids -> cross-attention keys/values) from model.pt."""
    import torch

    from p05_transformer.config import TransformerConfig
    from p05_transformer.export import EncoderGraph
    from p05_transformer.train import build_model

    cfg = TransformerConfig(**{k: v for k, v in bundle.manifest["provenance"]["config"].items()
                               if k in TransformerConfig.__dataclass_fields__})
    state = torch.load(bundle.file("model.pt"), weights_only=True)
    model = build_model(cfg, state["embed.weight"].shape[0])
    model.load_state_dict(state)
    return EncoderGraph(model.eval()).eval(), "encoder"


def torch_p06(bundle):
    """package-search / package-section: the float32 torch encoder of the run that made the bundle (ORT runs the
    int8-table graph: the comparison includes that quantisation); the section head from head.pt."""
    import torch

    from p06_contrastive.classifier import SectionClassifier
    from p06_contrastive.evaluate import load_run
    from p06_contrastive.model import SideEncoder

    run = Path(bundle.manifest["provenance"]["run_dir"])
    if not run.is_dir():
        raise FileNotFoundError(f"the bundle's run {run} is not on this machine")
    lr = load_run(run)
    if bundle.manifest["task"] == "text-retrieval":
        if bundle.manifest["postprocess"].get("dims", lr.encoder.out_dim) != lr.encoder.out_dim:
            raise ValueError("a projected index: the float encoder has another output width")
        return SideEncoder(lr.encoder, query=True).eval(), "query"
    head = torch.nn.Linear(lr.encoder.out_dim, len(bundle.manifest["postprocess"]["labels"]))
    head.load_state_dict(torch.load(bundle.file("head.pt"), weights_only=True))
    return SectionClassifier(SideEncoder(lr.encoder, query=False), head).eval(), "model"


def torch_p07(bundle):
    """fashion-anomaly: p07's autoencoder from weights.pt, wrapped like its export (image -> error, code)."""
    import torch

    from p07_autoencoder.config import AEConfig
    from p07_autoencoder.export import ServingGraph
    from p07_autoencoder.model import build_model

    cfg = AEConfig(**{k: v for k, v in bundle.manifest["provenance"]["config"].items()
                      if k in AEConfig.__dataclass_fields__})
    ae = build_model("image", [1, 28, 28], cfg.bottleneck, cfg.width)
    ae.load_state_dict(torch.load(bundle.file("weights.pt"), weights_only=True))
    return ServingGraph(ae.eval(), cfg.error_blur).eval(), "model"


# provenance.project -> bundle -> (torch module over the same inputs as the graph, the graph's role)
TORCH_LOADERS = {"p03_cnn": torch_p03, "p05_transformer": torch_p05, "p06_contrastive": torch_p06,
                 "p07_autoencoder": torch_p07}


def engines(p, role: str, input_name: str, module, x) -> dict:
    """The two callables to time on the same batch: the bundle's ONNX graph in ORT, the torch module."""
    import torch

    xt = torch.from_numpy(x)

    def run_torch():
        with torch.inference_mode():
            module(xt)

    return {"ort": lambda: p.run_graph(role, {input_name: x}), "torch": run_torch}


def ort_vs_torch(paths: list[Path], threads: int, rounds: int) -> dict:
    import numpy as np
    import torch

    from dlm_core.predictors import load_predictor

    torch.set_num_threads(threads)
    out = {}
    for path in paths:
        try:
            p = load_predictor(path, threads=threads)
        except Exception as err:  # noqa: BLE001
            out[str(path)] = {"skipped": f"bundle did not load: {err}"}
            continue
        project = p.manifest["provenance"]["project"]
        if project not in TORCH_LOADERS:
            out[p.name] = {"skipped": f"no torch loader for project {project}"}
            continue
        try:
            module, role = TORCH_LOADERS[project](p.bundle)
        except Exception as err:  # noqa: BLE001 - a bench reports what it can measure
            out[p.name] = {"skipped": f"torch model did not load: {err.__class__.__name__}: {err}"}
            continue
        spec = p.manifest["graphs"][role]["inputs"][0]
        ref = p.bundle.npz(p.manifest["reference"]["file"])[f"{role}.in.{spec['name']}"]
        row = {}
        for n in (1, 64):
            x = np.concatenate([ref] * (n // len(ref) + 1))[:n]
            med = interleaved_medians(engines(p, role, spec["name"], module, x),
                                      rounds=rounds if n == 1 else max(rounds // 4, 3))
            row[f"ort_ms_b{n}"], row[f"torch_ms_b{n}"] = med["ort"] * 1000, med["torch"] * 1000
            row[f"torch_over_ort_b{n}"] = med["torch"] / med["ort"]
        out[p.name] = row
    return out


# ------------------------------------------------------------------------------------ 2-4. the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """run_serve in a subprocess on a free loopback port, stopped with SIGINT."""

    def __init__(self, args: list[str]):
        from p10_serving.loadtest import wait_ready

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([str(BIN / "run_serve"), *args, "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_ready(self.url, 120)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """Busy (not idle, not I/O wait) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


class Loader:
    """run_loadtest's generator in a process of its own (spawned once), and what each run cost in CPU: the
    server's ms per request, the generator's, and the cores the rest of the machine used meanwhile."""

    def __init__(self):
        self.pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    def __call__(self, server: Server, path: str, body: dict, rate: float, seconds: float,
                 warmup: float = 1.0) -> dict:
        from p10_serving.loadtest import run

        cpu0, busy0, t0 = cpu_seconds(server.proc.pid), machine_busy(), time.perf_counter()
        r = self.pool.submit(run, server.url + path, body, rate, seconds, warmup, 200_000, 10.0, 512).result()
        cpu1, busy1, wall = cpu_seconds(server.proc.pid), machine_busy(), time.perf_counter() - t0
        sent = r["requests"] + r["warmup_requests"]
        r["cpu"] = {"server_ms_per_request": (cpu1 - cpu0) / sent * 1000,
                    "client_ms_per_request": r["client_cpu_s"] / sent * 1000,
                    "server_cores": (cpu1 - cpu0) / wall, "client_cores": r["client_cpu_s"] / wall,
                    "machine_busy_cores": (busy1 - busy0) / wall,
                    "other_cores": (busy1 - busy0 - (cpu1 - cpu0) - r["client_cpu_s"]) / wall}
        return r

    def close(self) -> None:
        self.pool.shutdown()


def brief(r: dict) -> dict:
    lat = r["latency_ms"]
    return {"offered_rate": round(r["offered_rate"], 1), "throughput": round(r["throughput"], 1),
            "success_ratio": round(r["success_ratio"], 4), "status_codes": r["status_codes"],
            "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"], "max_ms": lat["max"],
            **{k: round(v, 3) for k, v in r.get("cpu", {}).items()}, "load_avg_1m": round(os.getloadavg()[0], 2)}


class Ramp:
    """One server's saturation search: double the offered rate until the server cannot keep up (< 99% success
    or < 95% of the offered rate), then `refine` geometric bisections between the last rate it kept up with and
    the first it did not. Saturation = the best 2xx/s achieved with >= 99% success."""

    def __init__(self, start_rate: float = 50.0, max_rate: float = 6400.0, refine: int = 2):
        self.rate, self.max_rate, self.refine = start_rate, max_rate, refine
        self.good = self.bad = None
        self.steps = []

    def record(self, r: dict) -> None:
        self.steps.append(r)
        if r["success_ratio"] >= 0.99 and r["throughput"] >= 0.95 * r["offered_rate"]:
            self.good = self.rate
        else:
            self.bad = self.rate
        if self.bad is None:
            self.rate = self.rate * 2 if self.rate * 2 <= self.max_rate else None
        elif self.good is None or self.refine == 0:
            self.rate = None
        else:
            self.refine -= 1
            self.rate = (self.good * self.bad) ** 0.5

    def result(self) -> dict:
        best = max((s["throughput"] for s in self.steps if s["success_ratio"] >= 0.99), default=0.0)
        return {"saturation_rps": best, "kept_up_to_rps": self.good or 0.0,
                "steps": sorted(self.steps, key=lambda s: s["offered_rate"])}


def saturation(load: Loader, servers: dict[str, Server], path: str, body: dict, seconds: float) -> dict:
    """The servers' ramps interleaved step by step (each server in turn at its next rate), so that a background
    job on this shared machine hits all of them alike; {label: Ramp.result()}."""
    ramps = {label: Ramp() for label in servers}
    while any(r.rate for r in ramps.values()):
        for label, ramp in ramps.items():
            if ramp.rate:
                r = brief(load(servers[label], path, body, ramp.rate, seconds))
                print(f"    {label:9s} offered {ramp.rate:7.0f}/s -> {r['throughput']:7.1f}/s ok "
                      f"{r['success_ratio']:.3f} p99 {r['p99_ms']:.1f} ms  server {r['server_ms_per_request']:.2f} "
                      f"ms CPU/req  client {r['client_ms_per_request']:.2f}  other {r['other_cores']:.2f} cores",
                      flush=True)
                ramp.record(r)
    return {label: ramp.result() for label, ramp in ramps.items()}


def wrk(url: str, body: dict, seconds: float, connections: int) -> dict | None:
    """wrk (closed loop: each connection sends its next request when the last is answered) POSTing `body`;
    None when wrk is not installed."""
    if not shutil.which("wrk"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "body.json").write_text(json.dumps(body, separators=(",", ":")))
        script = Path(tmp) / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          f'local f = io.open("{tmp}/body.json")\nwrk.body = f:read("*a")\nf:close()\n')
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script),
                              url], capture_output=True, text=True, timeout=seconds + 60).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
    lines = re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    lat = {f"p{q}_ms": float(v) * unit[u] for q, v, u in lines}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    return {"connections": connections, "seconds": seconds, "requests_per_s": rps,
            "non_2xx": int(non2xx[1]) if non2xx else 0, "socket_errors": "Socket errors" in out, **lat,
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def model_ceiling(bundle: Path, threads: int, rounds: int) -> dict:
    """ONNX Runtime alone on the served graph: ms per row at batch 1 and at 32, and their ratio, the most
    that batching can raise the model's own throughput on this CPU."""
    from dlm_core.benchmark import interleaved_medians
    from dlm_core.predictors import load_predictor

    p = load_predictor(bundle, threads=threads)
    row = p.prepare([[(i * 7 + j * 3) % 256 for j in range(28)] for i in range(28)])
    med = interleaved_medians({"b1": lambda: p.run([row]), "b32": lambda: p.run([row] * 32)}, rounds=rounds)
    b1, b32 = med["b1"] * 1000, med["b32"] * 1000 / 32
    return {"ms_per_row_b1": b1, "ms_per_row_b32": b32, "rows_per_s_b1": 1000 / b1, "rows_per_s_b32": 1000 / b32,
            "batching_gain": b1 / b32, "note": "predictor.run (ORT + post-processing), one process, no HTTP"}


def autogroup() -> str | None:
    """This process's scheduler autogroup and its nice. With autogroups on (sched_autogroup_enabled), the CPU is
    shared fairly between sessions first: `nice` alone does not give a bench priority over another session's
    jobs, the autogroup's nice does (`echo -19 > /proc/self/autogroup` in a fresh `setsid` shell)."""
    try:
        return Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        return None


def mean_batch_size(url: str) -> float | None:
    """Rows per execution over the server's life, from its own /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=30).text
    total = lambda metric: sum(float(v) for v in re.findall(rf"^{metric}{{[^}}]*}} ([\d.e+]+)$", text, re.M))
    executions = total("dlm_inference_executions_total")
    return total("dlm_inference_rows_total") / executions if executions else None


def plot_saturation(curves: dict, path: Path) -> None:
    from dlm_core.plotting import plt, save_figure

    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 3.6))
    for label, sat in curves.items():
        ax.plot([s["offered_rate"] for s in sat["steps"]], [s["throughput"] for s in sat["steps"]], marker="o",
                label=f"{label} (saturation {sat['saturation_rps']:.0f}/s)")
    ax.set_xscale("log")
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel("2xx throughput (req/s)")
    ax.set_title("run_serve: batched vs unbatched")
    ax.legend()
    save_figure(fig, path)


def main() -> int:
    unshadow(__file__, "p10_serving")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="the fashion-cnn bundle (default: the newest under artifacts/)")
    ap.add_argument("--step-seconds", type=float, default=3.0, help="measured seconds per offered rate")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime / torch threads (default: 1)")
    ap.add_argument("--rounds", type=int, default=20, help="timing rounds for ORT vs torch at batch 1")
    ap.add_argument("--wrk-connections", type=int, default=16, help="wrk's connections in the cross-check")
    ap.add_argument("--skip-torch", action="store_true", help="skip ONNX Runtime vs torch (server figures only)")
    args = ap.parse_args()

    from dlm_core.bundle import artifacts_root, find_bundles, latest_bundle
    from dlm_core.errors import DlmError
    from dlm_core.io import read_json
    from p10_serving.loadtest import plot

    t0 = time.perf_counter()
    out_dir = results_dir()
    tmp = tempfile.TemporaryDirectory()
    try:
        bundle, source = Path(args.bundle or latest_bundle("fashion-cnn")), "fashion-cnn bundle"
    except DlmError:
        from dlm_core.testing import toy_image_bundle

        bundle, source = toy_image_bundle(tmp.name, name="toy-cnn"), "TOY bundle (no fashion-cnn bundle found)"
    served = sorted({latest_bundle(p.parent.name) for p in find_bundles(artifacts_root())} | {Path(bundle)})

    print("== ONNX Runtime vs torch eager", flush=True)
    engines = {"skipped": "--skip-torch"} if args.skip_torch else ort_vs_torch(served, args.threads, args.rounds)
    print(engines, flush=True)

    name = read_json(Path(bundle) / "manifest.json")["name"]
    print("== the model alone: ms per row at batch 1 and 32", flush=True)
    ceiling = model_ceiling(Path(bundle), args.threads, args.rounds)
    print(ceiling, flush=True)

    body = {"input": [[(i * 7 + j * 3) % 256 for j in range(28)] for i in range(28)]}
    path = f"/v1/models/{name}/predict"
    common = [str(bundle), "--threads", str(args.threads), "--queue-size", "1024"]
    load, cross = Loader(), {}
    try:
        print("== saturation, unbatched and batched (max 32 rows, 5 ms), interleaved", flush=True)
        servers = {"unbatched": Server([*common, "--no-batching"])}
        try:
            servers["batched"] = Server([*common, "--max-batch-size", "32", "--max-delay-ms", "5"])
            curves = saturation(load, servers, path, body, args.step_seconds)
            half = max(curves["unbatched"]["saturation_rps"] / 2, 1.0)
            print(f"== batched at half the unbatched saturation: {half:.0f}/s", flush=True)
            at_half = load(servers["batched"], path, body, half, 2 * args.step_seconds)
            plot(at_half, out_dir / "p10_serving_latency.png", title=f"batched run_serve at {half:.0f} req/s offered")
            for label, server in servers.items():
                print(f"== wrk, {label}", flush=True)
                cross[label] = wrk(server.url + path, body, args.step_seconds, args.wrk_connections)
            batch_sizes = mean_batch_size(servers["batched"].url)
        finally:
            for server in servers.values():
                server.stop()
        plot_saturation(curves, out_dir / "p10_serving_saturation.png")

        print("== server overhead: the no-op model, unbatched, 200/s then saturation", flush=True)
        server = Server(["--noop", "--no-batching", "--queue-size", "1024"])
        try:
            noop = brief(load(server, "/v1/models/noop/predict", {"input": 0}, 200, 2 * args.step_seconds))
            noop_sat = saturation(load, {"noop": server}, "/v1/models/noop/predict", {"input": 0},
                                  args.step_seconds)["noop"]
            cross["noop"] = wrk(server.url + "/v1/models/noop/predict", {"input": 0}, args.step_seconds,
                                args.wrk_connections)
        finally:
            server.stop()
    finally:
        load.close()
    tmp.cleanup()
    print(f"== wrk cross-check: {cross}", flush=True)

    half_brief = brief(at_half)
    ratio = curves["batched"]["saturation_rps"] / max(curves["unbatched"]["saturation_rps"], 1e-9)
    result = {
        "bench": "p10_serving: run_serve on the fashion-cnn bundle, batched (max 32 rows / 5 ms) vs --no-batching; "
                 "open-loop load from the scheduled send time (run_loadtest in its own process), same machine",
        "machine": {**machine(), "note": f"{os.cpu_count()} cores shared by the server, the load generator and "
                                         "any background jobs (other_cores per step: what the rest used)",
                    "load_avg_1m_2m_15m_at_end": [round(x, 2) for x in os.getloadavg()],
                    "nice": os.nice(0), "autogroup": autogroup()},
        "model_source": f"{source}: {bundle}",
        "ours": {"batched_saturation_rps": curves["batched"]["saturation_rps"],
                 "p50_ms_at_half_unbatched_saturation": half_brief["p50_ms"],
                 "p99_ms_at_half_unbatched_saturation": half_brief["p99_ms"],
                 "errors_at_half": sum(v for k, v in half_brief["status_codes"].items() if not k.startswith("2")),
                 "offered_rps_at_half": half_brief["offered_rate"]},
        "peer": {"unbatched_saturation_rps": curves["unbatched"]["saturation_rps"]},
        "ratio": ratio,
        "goal": "ratio = batched / unbatched saturation throughput >= 3; p99 <= 25 ms at half the unbatched "
                "saturation with 0 errors",
        "goal_met": {"batching_3x": ratio >= 3, "p99_25ms": (half_brief["p99_ms"] or 1e9) <= 25,
                     "zero_errors": half_brief["success_ratio"] == 1.0},
        "model_ceiling": ceiling,
        "mean_batch_size_batched_server": batch_sizes,
        "at_half": half_brief,
        "noop_overhead": noop,
        "noop_saturation_rps": noop_sat["saturation_rps"],
        "wrk_cross_check": cross,
        "ort_vs_torch": engines,
        "saturation_steps": {**{k: v["steps"] for k, v in curves.items()}, "noop": noop_sat["steps"]},
        "threads": args.threads,
        "gpu": "not measured (no GPU on this machine)",
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_result("p10_serving", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
