"""p10_serving bench (issue #30): run_serve against Mosec and LitServe, on the same bundles, in one run.

Each server has one inference worker, ONNX Runtime with 1 intra-op thread and no spinning (dlm_core's predictor:
prepare() per request, run() per batch), and its own dynamic batching at 32 rows / 5 ms; all answer the same
POST /v1/models/<bundle>/predict {"input": <28x28 pixels>} -> {"prediction", "confidence", ...}:

    ours      run_serve BUNDLE --max-batch-size 32 --max-delay-ms 5 --threads 1 [--serve-args ...]
    mosec     bench/peers/mosec_server.py     (Mosec: Rust HTTP front, one Python worker, max_batch_size 32,
              max_wait_time 5 ms)
    litserve  bench/peers/litserve_server.py  (LitServe: one API server process, one worker, max_batch_size 32,
              batch_timeout 5 ms)

The peers run from a venv of their own, .bench-venv-peers/ (made here with `python -m venv` + pip from
bench/peers/requirements.txt, reused while that file is unchanged; the project's core/src on its path through a
.pth file); a peer that cannot be installed or started is recorded with the reason and the bench goes on.

For each bundle (default: the fashion-cnn-demo bundle and the p03 default fashion-cnn bundle), per server:
- time to ready: spawn -> first 200 on its readiness route (ours /v2/health/ready, Mosec /, LitServe /health),
  and -> first 200 on the predict route;
- saturation = the highest offered rate kept up with (>= 95% of it achieved, >= 99% 2xx): after a short warm-up
  load, open-loop ramps (run_loadtest, its own process) from --start-rate, x1.25 while kept up with (the first
  step not kept up with is run once more before it counts: --retries), then --refine geometric bisections; the
  servers' steps interleaved (each in turn, so that a background job hits all alike), the servers not under
  load paused meanwhile (SIGSTOP of their tree: an idle LitServe worker polls its queue), each idle again before
  its next step;
- p50/p99 at 50% and 80% of each server's saturation, p99 (and errors) at a fixed 800 req/s, interleaved too;
- server CPU per request: utime+stime of the server's process tree (/proc/<pid>/stat of the server and all its
  descendants) over the measured window / the 2xx answered in it;
- peak RSS: VmHWM of each process of the tree, summed.
Beside them, per step, the CPU the load generator and the rest of the machine used (another job may share the
cores: the result says how much), and the model alone (predictor.run at batch 1 and 32, no HTTP).

    .venv/bin/python -P bench/p10_serving.py [--bundle PATH ...] [--step-seconds S] [--servers ours,mosec,...]
                                             [--serve-args "--flag value"] [--quick] [--with-eager]

JSON to bench/results/p10_serving.json, plots p10_serving_saturation.png and p10_serving_latency.png beside it
(named after --out's file when given). Replicas behind HAProxy: --servers ours,ours-x1,ours-x2 --out
bench/results/p10_serving_replicas.json (bench/peers/replicas.py; issue #32).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from dlm_core.benchmark import interleaved_medians, machine, results_dir, unshadow, write_result
from dlm_core.net import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PEERS = Path(__file__).resolve().parent / "peers"
PEER_VENV = ROOT / ".bench-venv-peers"
TICK = os.sysconf("SC_CLK_TCK")
SERVERS = ("ours", "mosec", "litserve", "ours-x1", "ours-x2")
REPLICAS = {"ours-x1": 1, "ours-x2": 2}  # run_serve replicas behind HAProxy (bench/peers/replicas.py)
GOAL = ("issue #30: ours >= Mosec's saturation on each bundle; p99 <= 25 ms at 80% of our saturation with 0 errors; "
        "our p99 at 800 req/s <= Mosec's; CPU/request <= 0.25 ms on the demo bundle")


def log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------ /proc
def proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree(pid: int) -> list[int]:
    """pid and all its live descendants (from every process's parent in /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            f = proc_stat(int(d.name))
            if f:
                children.setdefault(int(f[1]), []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_s(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads) so far, in seconds."""
    total = 0
    for p in pids:
        f = proc_stat(p)
        if f:
            total += int(f[11]) + int(f[12])
    return total / TICK


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def tree_cpu_s(pid: int) -> float:
    return cpu_s(tree(pid))


def machine_busy_s() -> float:
    """Busy (not idle, not I/O wait) CPU seconds of the whole machine so far (/proc/stat)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v) - v[3] - v[4]) / TICK


def peak_rss_mb(pid: int) -> tuple[float, int]:
    """VmHWM of each process of the tree, summed (MiB), and how many processes."""
    total, n = 0, 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
                    n += 1
        except OSError:
            pass
    return total / 1024, n


def autogroup() -> str | None:
    """This process's scheduler autogroup and its nice (with autogroups on, the CPU is shared between sessions
    first: `echo -19 > /proc/self/autogroup` in a fresh `setsid` shell gives a bench priority)."""
    try:
        return Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        return None


# ------------------------------------------------------------------------------------ the peers' venv
def peer_venv(log_dir: Path) -> dict:
    """.bench-venv-peers/ with bench/peers/requirements.txt installed and core/src on its path; reused while the
    requirements file is unchanged. {"python", "state", "versions"} or {"error"}."""
    req = PEERS / "requirements.txt"
    digest = hashlib.sha256(req.read_bytes()).hexdigest()[:16]
    py, marker = PEER_VENV / "bin" / "python", PEER_VENV / ".bench-installed"
    state = "reused"
    if not (py.exists() and marker.exists() and marker.read_text().strip() == digest):
        state = "installed"
        base = Path(sys.base_prefix) / "bin" / "python3"
        log(f"== installing the peers' venv {PEER_VENV} (from {req.relative_to(ROOT)}; a few minutes)")
        try:
            if not py.exists():
                subprocess.run([str(base), "-m", "venv", str(PEER_VENV)], check=True, capture_output=True, text=True,
                               timeout=300)
            with open(log_dir / "peer-pip.log", "w") as f:
                subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(req)], check=True, stdout=f,
                               stderr=subprocess.STDOUT, timeout=1800)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
            tail = ""
            if (log_dir / "peer-pip.log").exists():
                tail = (log_dir / "peer-pip.log").read_text()[-1500:]
            return {"error": f"peer venv install failed: {err}; {tail}"}
    try:
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True, timeout=120).stdout.strip()
        (Path(site) / "dlm-core-src.pth").write_text(str(ROOT / "core" / "src") + "\n")
        marker.write_text(digest + "\n")
        versions = json.loads(subprocess.run(
            [str(py), "-c", "import json, importlib.metadata as m; print(json.dumps({k: m.version(k) for k in "
             "('mosec', 'litserve', 'onnxruntime', 'numpy', 'uvicorn', 'fastapi', 'pyzmq')}))"],
            check=True, capture_output=True, text=True, timeout=120).stdout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, ValueError) as err:
        return {"error": f"peer venv unusable: {err}"}
    return {"python": str(py), "state": state, "versions": versions, "requirements": str(req.relative_to(ROOT))}


# ------------------------------------------------------------------------------------ the servers
def http(method: str, url: str, body: bytes | None = None, timeout: float = 2.0) -> int:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ValueError):
        return 0


class Server:
    """One server under test: spawned in a session of its own (so its whole tree can be stopped), its time to
    ready measured from the spawn, its process tree's CPU and memory read from /proc."""

    def __init__(self, label: str, cmd: list[str], ready_path: str, predict_path: str, body: bytes, port: int,
                 log_dir: Path, env: dict | None = None):
        self.label, self.cmd, self.port = label, cmd, port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path, self.predict_path, self.body = ready_path, predict_path, body
        self.log_path = log_dir / f"{label}-{port}.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.info: dict = {"command": " ".join(shlex.quote(c) for c in cmd)}

    def start(self, timeout: float = 180.0) -> None:
        t0 = time.perf_counter()
        with open(self.log_path, "w") as f:
            self.proc = subprocess.Popen(self.cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT,
                                         start_new_session=True)
        deadline = t0 + timeout
        while http("GET", self.url + self.ready_path, timeout=1.0) != 200:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode} before ready: {self.log_tail()}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f} s: {self.log_tail()}")
            time.sleep(0.02)
        self.info["ready_s"] = round(time.perf_counter() - t0, 3)
        code = 0
        while code != 200:
            code = http("POST", self.url + self.predict_path, self.body, timeout=10.0)
            if code != 200:
                if self.proc.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"predict answers {code}: {self.log_tail()}")
                time.sleep(0.02)
        self.info["first_answer_s"] = round(time.perf_counter() - t0, 3)
        self.info["processes"] = len(tree(self.proc.pid))
        self.info["idle_cores"] = round(self.cores_over(1.0), 3)

    def cpu(self) -> float:
        return tree_cpu_s(self.proc.pid)

    def cores_over(self, seconds: float) -> float:
        pids = tree(self.proc.pid)
        c0, t0 = cpu_s(pids), time.perf_counter()
        time.sleep(seconds)
        return (cpu_s(pids) - c0) / (time.perf_counter() - t0)

    def wait_idle(self, limit: float = 30.0) -> float:
        """Wait until the tree uses no more CPU than when idle (a backlog from an overloaded step is done)."""
        t0 = time.perf_counter()
        threshold = self.info.get("idle_cores", 0.0) + 0.08
        while time.perf_counter() - t0 < limit and self.cores_over(0.25) > threshold:
            pass
        return time.perf_counter() - t0

    def pause(self) -> None:
        """SIGSTOP the whole tree: a server waiting for its next step takes no CPU from the one under load
        (LitServe's worker polls its queue even when idle)."""
        self._signal_tree(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_tree(signal.SIGCONT)

    def _signal_tree(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for p in tree(self.proc.pid):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def log_tail(self, n: int = 1200) -> str:
        try:
            return self.log_path.read_text()[-n:].strip()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()
        pids = tree(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        for p in pids:  # what is left of the tree (LitServe's and Mosec's workers)
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


def make_server(label: str, bundle: Path, name: str, body: bytes, peer: dict, serve_args: list[str],
                log_dir: Path) -> Server:
    port = free_port()
    path = f"/v1/models/{name}/predict"
    ours = ["--max-batch-size", "32", "--max-delay-ms", "5", "--threads", "1", *serve_args]
    if label == "ours":
        cmd = [str(BIN / "run_serve"), str(bundle), "--port", str(port), *ours]
        return Server(label, cmd, "/v2/health/ready", path, body, port, log_dir)
    if label in REPLICAS:
        cmd = [sys.executable, str(PEERS / "replicas.py"), str(bundle), "--replicas", str(REPLICAS[label]),
               "--port", str(port), "--", *ours]
        return Server(label, cmd, "/v2/health/ready", path, body, port, log_dir)
    if "error" in peer:
        raise RuntimeError(peer["error"])
    env = {"PYTHONPATH": str(ROOT / "core" / "src"), "OMP_NUM_THREADS": "1"}
    if label == "mosec":
        cmd = [peer["python"], str(PEERS / "mosec_server.py"), "--address", "127.0.0.1", "--port", str(port),
               "--timeout", "10000"]
        env.update(DLM_PEER_BUNDLE=str(bundle), DLM_PEER_THREADS="1", DLM_PEER_MAX_BATCH="32",
                   DLM_PEER_MAX_WAIT_MS="5")
        return Server(label, cmd, "/", path, body, port, log_dir, env)
    if label == "litserve":
        cmd = [peer["python"], str(PEERS / "litserve_server.py"), str(bundle), "--port", str(port), "--threads", "1",
               "--max-batch-size", "32", "--batch-timeout-ms", "5"]
        return Server(label, cmd, "/health", path, body, port, log_dir, env)
    raise ValueError(label)


# ------------------------------------------------------------------------------------ the load generator
class Load:
    """run_loadtest (the console script, its own process) at one offered rate: its loadtest.json, plus the CPU the
    server's tree, the generator and the rest of the machine used over the measured window (sampled from /proc
    when the generator says it starts, + warm-up, + duration)."""

    def __init__(self, tmp: Path, body_json: str, warmup: float, timeout: float = 10.0):
        self.tmp, self.body_json, self.warmup, self.timeout = tmp, body_json, warmup, timeout

    @staticmethod
    def done(out: Path) -> bool:
        try:
            json.loads((out / "loadtest.json").read_text())
            return True
        except (OSError, ValueError):
            return False

    def __call__(self, server: Server, name: str, rate: float, duration: float) -> dict:
        # a folder of its own for every step of the run (one Load per bundle: a per-instance count would hand the
        # second bundle's steps the first's folders, whose loadtest.json then reads as this step's, already done)
        out = Path(tempfile.mkdtemp(prefix="load-", dir=self.tmp))
        cmd = [str(BIN / "run_loadtest"), "--url", server.url, "--model", name, "--path", server.predict_path,
               "--body", self.body_json, "--rate", f"{rate:.2f}", "--duration", str(duration), "--warmup",
               str(self.warmup), "--max-requests", "500000", "--timeout", str(self.timeout), "--out", str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        pids = tree(server.proc.pid)
        balancer = [p for p in pids if comm(p) == "haproxy"]
        marks: dict[str, tuple] = {}
        started = threading.Event()

        def sample(key: str, at: float) -> None:
            time.sleep(max(at - time.perf_counter(), 0))
            marks[key] = (time.perf_counter(), cpu_s(pids), cpu_s([proc.pid]), machine_busy_s(), cpu_s(balancer))

        lines = []
        sampler = None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("loading ") and not started.is_set():
                started.set()
                t0 = time.perf_counter() + 0.05  # run_load's own t0: 50 ms after it starts
                sampler = threading.Thread(target=lambda t0=t0: (sample("a", t0 + self.warmup),
                                                                 sample("b", t0 + self.warmup + duration)),
                                           daemon=True)
                sampler.start()
            if line.startswith("latency ms"):  # the summary: loadtest.json comes next, then its plot (seconds
                deadline = time.perf_counter() + 10  # of matplotlib this bench does not need: not waited for)
                while time.perf_counter() < deadline and proc.poll() is None and not self.done(out):
                    time.sleep(0.01)
                if self.done(out) and proc.poll() is None:
                    proc.kill()
                break
        proc.stdout.close()
        proc.wait()
        if sampler is not None:
            sampler.join(5)
        if not self.done(out):
            raise RuntimeError(f"run_loadtest exited {proc.returncode}: {''.join(lines)[-800:]}")
        r = json.loads((out / "loadtest.json").read_text())
        lat = r["latency_ms"]
        ok = sum(v for k, v in r["status_codes"].items() if k.startswith("2"))
        step = {"rate": round(rate, 1), "offered_rate": round(r["offered_rate"], 1),
                "throughput": round(r["throughput"], 1), "success_ratio": round(r["success_ratio"], 4),
                "errors": r["requests"] - ok, "status_codes": r["status_codes"],
                "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"], "max_ms": lat["max"]}
        if "a" in marks and "b" in marks:
            (ta, sa, ca, ma, ba), (tb, sb, cb, mb, bb) = marks["a"], marks["b"]
            wall = tb - ta
            if balancer:  # HAProxy's share of the tree (the replicas are the rest)
                step["balancer_cpu_ms_per_request"] = round((bb - ba) / max(ok, 1) * 1000, 4)
            step.update(server_cpu_ms_per_request=round((sb - sa) / max(ok, 1) * 1000, 4),
                        server_cores=round((sb - sa) / wall, 3), client_cores=round((cb - ca) / wall, 3),
                        machine_busy_cores=round((mb - ma) / wall, 3),
                        other_cores=round(max((mb - ma) - (sb - sa) - (cb - ca), 0.0) / wall, 3))
        step["kept_up"] = kept_up(step)
        step["load_avg_1m"] = round(os.getloadavg()[0], 2)
        return step


def kept_up(step: dict) -> bool:
    return step["success_ratio"] >= 0.99 and step["throughput"] >= 0.95 * step["rate"]


def show(label: str, s: dict) -> str:
    return (f"    {label:9s} {s['rate']:7.0f}/s -> {s['throughput']:7.1f}/s ok {s['success_ratio']:.3f} "
            f"p50 {s['p50_ms'] or 0:6.1f} p99 {s['p99_ms'] or 0:7.1f} ms  {'kept up' if s['kept_up'] else 'BEHIND '}"
            f"  server {s.get('server_cpu_ms_per_request', float('nan')):.3f} ms CPU/req "
            f"({s.get('server_cores', float('nan')):.2f} cores)  client {s.get('client_cores', float('nan')):.2f}"
            f"  other {s.get('other_cores', float('nan')):.2f} cores")


class Ramp:
    """One server's saturation search: x`factor` from `start` while kept up with, then `refine` geometric
    bisections between the highest rate kept up with and the lowest not (halving from `start` if even that
    was not). The first `retries` steps not kept up with are run once more at the same rate before they count
    (a burst of another job on a shared machine should not end a ramp). Saturation = the highest offered rate
    kept up with."""

    def __init__(self, start: float, factor: float, refine: int, retries: int = 1, max_rate: float = 8000.0):
        self.rate, self.factor, self.refine, self.retries, self.max_rate = start, factor, refine, retries, max_rate
        self.good = self.bad = None
        self.steps: list[dict] = []

    def record(self, step: dict) -> None:
        self.steps.append(step)
        if not step["kept_up"] and self.retries > 0 and (self.good is None or self.rate > self.good):
            self.retries -= 1
            step["retried"] = True
            return
        if step["kept_up"]:
            self.good = max(self.good or 0.0, self.rate)
        else:
            self.bad = min(self.bad or 1e12, self.rate)
        if self.bad is None:
            nxt = self.rate * self.factor
            self.rate = nxt if nxt <= self.max_rate else None
        elif self.good is None:
            self.rate = self.rate / 2 if self.rate / 2 >= 10 else None
        elif self.refine > 0 and self.bad / self.good > 1.04:
            self.refine -= 1
            self.rate = (self.good * self.bad) ** 0.5
        else:
            self.rate = None

    def result(self) -> dict:
        best = max((s for s in self.steps if s["kept_up"]), key=lambda s: s["rate"], default=None)
        return {"saturation_rps": best["rate"] if best else 0.0,
                "throughput_at_saturation": best["throughput"] if best else 0.0,
                "cpu_ms_per_request_at_saturation": best.get("server_cpu_ms_per_request") if best else None,
                "server_cores_at_saturation": best.get("server_cores") if best else None,
                "first_rate_not_kept_up": self.bad}


# ------------------------------------------------------------------------------------ extras
def model_ceiling(bundle: Path, rounds: int) -> dict:
    """predictor.run alone (ORT + post-processing, 1 thread, no HTTP): ms per row at batch 1 and 32."""
    from dlm_core.predictors import load_predictor

    p = load_predictor(bundle, threads=1)
    row = p.prepare(demo_input())
    med = interleaved_medians({"b1": lambda: p.run([row]), "b32": lambda: p.run([row] * 32)}, rounds=rounds)
    b1, b32 = med["b1"] * 1000, med["b32"] * 1000 / 32
    return {"ms_per_row_b1": round(b1, 4), "ms_per_row_b32": round(b32, 4), "rows_per_s_b1": round(1000 / b1, 1),
            "rows_per_s_b32": round(1000 / b32, 1), "prepare_ms": round(interleaved_medians(
                {"prep": lambda: p.prepare(demo_input())}, rounds=rounds)["prep"] * 1000, 4)}


def ort_vs_torch(bundle: Path, rounds: int) -> dict:
    """ONNX Runtime vs torch eager on the bundle's graph (p03 bundles: the model from weights.pt, wrapped as its
    export), batch 1 and 64, 1 thread each, interleaved medians."""
    import numpy as np
    import torch

    from dlm_core.predictors import load_predictor
    from p03_cnn.export import ServingGraph
    from p03_cnn.model import build_model

    torch.set_num_threads(1)
    p = load_predictor(bundle, threads=1)
    if p.manifest["provenance"]["project"] != "p03_cnn":
        return {"skipped": "torch eager only for p03_cnn bundles here"}
    cfg = p.manifest["provenance"]["config"]
    model = build_model(cfg["arch"], len(p.manifest["postprocess"]["labels"]), cfg["width"], cfg["blocks"],
                        cfg.get("dropout", 0.0), cfg.get("last_width", 0))
    model.load_state_dict(torch.load(p.bundle.file("weights.pt"), weights_only=True))
    module = ServingGraph(model, bool(cfg.get("tta_flip", False))).eval()  # as the bundle was exported
    spec = p.manifest["graphs"]["model"]["inputs"][0]
    ref = p.bundle.npz(p.manifest["reference"]["file"])[f"model.in.{spec['name']}"]
    row = {}
    for n in (1, 64):
        x = np.concatenate([ref] * (n // len(ref) + 1))[:n]
        xt = torch.from_numpy(x)

        def run_torch(xt=xt):
            with torch.inference_mode():
                module(xt)

        med = interleaved_medians({"ort": lambda x=x: p.run_graph("model", {spec["name"]: x}), "torch": run_torch},
                                  rounds=rounds if n == 1 else max(rounds // 4, 3))
        row[f"ort_ms_b{n}"], row[f"torch_ms_b{n}"] = med["ort"] * 1000, med["torch"] * 1000
        row[f"torch_over_ort_b{n}"] = med["torch"] / med["ort"]
    return row


def our_batch_size(server: Server) -> float | None:
    """Rows per model execution over our server's life (its /metrics), when it exposes them."""
    import re

    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except (OSError, ValueError):
        return None
    total = lambda m: sum(float(v) for v in re.findall(rf"^{m}(?:{{[^}}]*}})? ([\d.e+]+)$", text, re.M))
    executions = total("dlm_inference_executions_total")
    return round(total("dlm_inference_rows_total") / executions, 2) if executions else None


def demo_input() -> list[list[int]]:
    return [[(i * 7 + j * 3) % 256 for j in range(28)] for i in range(28)]


def plots(bundles: dict, out_dir: Path, stem: str = "p10_serving") -> None:
    from dlm_core.plotting import plt, save_figure

    pyplot = plt()
    colors = {"ours": "tab:blue", "mosec": "tab:orange", "litserve": "tab:green", "ours-x1": "tab:purple",
              "ours-x2": "tab:red"}
    names = list(bundles)
    for kind in ("saturation", "latency"):
        fig, axes = pyplot.subplots(1, len(names), figsize=(5.5 * len(names), 3.8), squeeze=False)
        for ax, name in zip(axes[0], names):
            for label, s in bundles[name]["servers"].items():
                steps = sorted(s.get("steps", []) + [p for p in s.get("points", {}).values() if p],
                               key=lambda x: x["rate"])
                if not steps:
                    continue
                x = [p["rate"] for p in steps]
                if kind == "saturation":
                    ax.plot(x, [p["throughput"] for p in steps], marker="o", ms=3, color=colors.get(label),
                            label=f"{label} (saturation {s['saturation_rps']:.0f}/s)")
                else:
                    ax.plot(x, [p["p99_ms"] for p in steps], marker="o", ms=3, color=colors.get(label), label=label)
            if kind == "saturation":
                lim = ax.get_xlim()
                ax.plot(lim, lim, color="grey", lw=0.8, ls=":", label="achieved = offered")
                ax.set_ylabel("2xx throughput (req/s)")
            else:
                ax.axhline(25, color="grey", lw=0.8, ls=":", label="25 ms")
                ax.axvline(800, color="grey", lw=0.8, ls="--")
                ax.set_yscale("log")
                ax.set_ylabel("p99 latency (ms, from scheduled send)")
            ax.set_xlabel("offered rate (req/s)")
            ax.set_title(name)
            ax.legend(fontsize=8)
        fig.suptitle("run_serve vs Mosec vs LitServe: one worker, 1 ORT thread, batching 32 rows / 5 ms",
                     fontsize=10)
        save_figure(fig, out_dir / f"{stem}_{kind}.png")


# ------------------------------------------------------------------------------------ one bundle
def bench_bundle(bundle: Path, labels: list[str], peer: dict, args, tmp: Path) -> dict:
    from dlm_core.io import read_json

    manifest = read_json(bundle / "manifest.json")
    name = manifest["name"]
    body_json = json.dumps({"input": demo_input()}, separators=(",", ":"))
    body = body_json.encode()
    out: dict = {"path": str(bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else bundle),
                 "name": name, "version": manifest.get("version"), "servers": {}}
    log(f"== {name} ({out['path']}): the model alone")
    out["model_ceiling"] = model_ceiling(bundle, args.rounds)
    log(f"    {out['model_ceiling']}")
    if args.with_eager:
        log("== ONNX Runtime vs torch eager")
        try:
            out["ort_vs_torch"] = ort_vs_torch(bundle, args.rounds)
        except Exception as err:  # noqa: BLE001 - a bench reports what it can measure
            out["ort_vs_torch"] = {"skipped": f"{err.__class__.__name__}: {err}"}
        log(f"    {out['ort_vs_torch']}")

    servers: dict[str, Server] = {}
    try:
        for label in labels:  # one at a time, so that their start-ups do not compete
            log(f"== {name}: starting {label}")
            s = None
            try:
                s = make_server(label, bundle, name, body, peer, args.serve_args, tmp)
                s.start()
                servers[label] = s
                log(f"    {label}: ready in {s.info['ready_s']:.2f} s, first answer {s.info['first_answer_s']:.2f} s, "
                    f"{s.info['processes']} processes, idle {s.info['idle_cores']:.3f} cores")
            except Exception as err:  # noqa: BLE001 - a peer that cannot start is recorded, the bench goes on
                log(f"    {label} did not start: {err}")
                out["servers"][label] = {"error": f"did not start: {err}"}
                if s is not None:
                    s.stop()
        load = Load(tmp, body_json, args.warmup)
        if args.pause:
            for s in servers.values():
                s.pause()
        ramps = {label: Ramp(args.start_rate, args.factor, args.refine, args.retries) for label in servers}

        def step(label: str, rate: float, seconds: float) -> dict | None:
            s = servers[label]
            if args.pause:
                s.resume()
            s.wait_idle()
            try:
                r = load(s, name, rate, seconds)
            except RuntimeError as err:
                log(f"    {label}: load step failed: {err}")
                return None
            finally:
                if args.pause:
                    s.pause()
            log(show(label, r))
            return r

        log(f"== {name}: a warm-up load of each server ({args.warmup + args.step_seconds / 2:g} s at "
            f"{args.start_rate / 2:g}/s, not counted)")
        warm = {label: step(label, args.start_rate / 2, args.step_seconds / 2) for label in servers}
        log(f"== {name}: saturation ramps (x{args.factor} from {args.start_rate:g}/s, {args.refine} bisections, "
            f"{args.step_seconds:g} s + {args.warmup:g} s warm-up per step), interleaved")
        while any(r.rate for r in ramps.values()):
            for label, ramp in ramps.items():
                if ramp.rate:
                    r = step(label, ramp.rate, args.step_seconds)
                    if r is None:
                        ramp.rate = None
                    else:
                        ramp.record(r)
        sat = {label: ramp.result() for label, ramp in ramps.items()}
        points: dict[str, dict] = {label: {} for label in servers}
        plan = [("at_50pct", lambda lab: 0.5 * sat[lab]["saturation_rps"]),
                ("at_80pct", lambda lab: 0.8 * sat[lab]["saturation_rps"]),
                ("at_800rps", lambda lab: 800.0)]
        log(f"== {name}: 50% and 80% of each saturation, and 800 req/s ({args.point_seconds:g} s each), interleaved")
        for key, rate_of in plan:
            for label in servers:
                rate = rate_of(label)
                points[label][key] = step(label, rate, args.point_seconds) if rate >= 1 else None
        for label, s in servers.items():
            s.resume()
            rss, nproc = peak_rss_mb(s.proc.pid)
            res = {**s.info, "peak_rss_mb": round(rss, 1), "processes_at_end": nproc, **sat[label]}
            for key, p in points[label].items():
                tag = key.removeprefix("at_")
                res[f"p50_ms_{tag}"] = p["p50_ms"] if p else None
                res[f"p99_ms_{tag}"] = p["p99_ms"] if p else None
                res[f"errors_{tag}"] = p["errors"] if p else None
            res["cpu_ms_per_request_at_80pct"] = (points[label].get("at_80pct") or {}).get(
                "server_cpu_ms_per_request")
            if label == "ours":
                res["mean_batch_size"] = our_batch_size(s)
            res["warm_step"] = warm.get(label)
            res["steps"] = sorted(ramps[label].steps, key=lambda x: x["rate"])
            res["points"] = points[label]
            out["servers"][label] = res
    finally:
        for s in servers.values():
            s.stop()
    out["servers"] = {label: out["servers"][label] for label in labels if label in out["servers"]}
    return out


MAKE_BUNDLE = {"fashion-cnn-demo": "p03_cnn/demo.sh (run_cnn_train --preset quick, then run_cnn_export RUN --name "
                                   "fashion-cnn-demo --version quick)",
               "fashion-cnn": "run_cnn_train (its default config), then run_cnn_export RUN"}


def default_bundles() -> tuple[list[Path], dict]:
    """The newest fashion-cnn-demo and fashion-cnn bundles under artifacts/; {name: how to make it} for those
    missing."""
    from dlm_core.bundle import latest_bundle
    from dlm_core.errors import DlmError

    found, missing = [], {}
    for name, how in MAKE_BUNDLE.items():
        try:
            found.append(Path(latest_bundle(name)).resolve())
        except DlmError:
            missing[name] = f"no {name} bundle under artifacts/: make it with {how}"
            log(f"({missing[name]})")
    return found, missing


def main() -> int:
    unshadow(__file__, "p10_serving")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", default=None, metavar="PATH",
                    help="a bundle folder (repeatable; default: the newest fashion-cnn-demo and fashion-cnn bundles)")
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help=f"comma-separated, of {','.join(SERVERS)} (default: all; ours-xN: N replicas behind HAProxy)")
    ap.add_argument("--step-seconds", type=float, default=None, help="measured seconds per ramp step (default 3; "
                    "--quick 1.5); the 50%%/80%%/800 points last twice that (--quick: as long)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up seconds before each step (default 1; "
                    "--quick 0.5)")
    ap.add_argument("--start-rate", type=float, default=300.0, help="first offered rate of each ramp (default 300)")
    ap.add_argument("--factor", type=float, default=1.25, help="ramp factor while kept up with (default 1.25)")
    ap.add_argument("--refine", type=int, default=None, help="bisections after the first step not kept up with "
                    "(default 2; --quick 1)")
    ap.add_argument("--retries", type=int, default=None, help="steps not kept up with that a ramp runs once more "
                    "before they count (default 1; --quick 0)")
    ap.add_argument("--serve-args", default="", help="extra flags for run_serve, one shell-quoted string (a lone "
                    "flag as --serve-args=--no-batching)")
    ap.add_argument("--quick", action="store_true", help="a ~2-minute sanity run: the first bundle only, short steps")
    ap.add_argument("--with-eager", action="store_true", help="also ONNX Runtime vs torch eager per bundle")
    ap.add_argument("--no-pause", dest="pause", action="store_false",
                    help="leave the servers not under load running (default: SIGSTOP them between their steps)")
    ap.add_argument("--rounds", type=int, default=20, help="timing rounds for the model-alone figures")
    ap.add_argument("--out", default=None, help="JSON path (default: bench/results/p10_serving.json; plots beside)")
    args = ap.parse_args()
    args.step_seconds = args.step_seconds or (1.5 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.refine = args.refine if args.refine is not None else (1 if args.quick else 2)
    args.retries = args.retries if args.retries is not None else (0 if args.quick else 1)
    args.point_seconds = args.step_seconds if args.quick else 2 * args.step_seconds
    args.serve_args = shlex.split(args.serve_args)
    labels = [s.strip() for s in args.servers.split(",") if s.strip()]
    if bad := [s for s in labels if s not in SERVERS]:
        ap.error(f"--servers: unknown {bad}; use {','.join(SERVERS)}")

    t0 = time.perf_counter()
    bundles, missing = ([Path(b).resolve() for b in args.bundle], {}) if args.bundle else default_bundles()
    if args.quick:
        bundles = bundles[:1]
    if not bundles:
        log("no bundle: export one (p03_cnn/demo.sh makes fashion-cnn-demo) or pass --bundle")
        return 2
    out_path = Path(args.out) if args.out else results_dir() / "p10_serving.json"
    out_dir = out_path.parent
    info0 = machine()
    busy0, wall0 = machine_busy_s(), time.perf_counter()
    log(f"== machine: {info0}; autogroup {autogroup()}")
    with tempfile.TemporaryDirectory(prefix="p10-bench-") as tmp_name:
        tmp = Path(tmp_name)
        peer = {"skipped": "no peer server asked for"}
        if any(label in ("mosec", "litserve") for label in labels):
            peer = peer_venv(tmp)
            log(f"== peers' venv: {peer}")
        results = {}
        for bundle in bundles:
            r = bench_bundle(bundle, labels, peer, args, tmp)
            results[r["name"]] = r
    wall = time.perf_counter() - t0
    all_steps = [st for b in results.values() for s in b["servers"].values()
                 for st in s.get("steps", []) + [p for p in s.get("points", {}).values() if p]]
    other = [st["other_cores"] for st in all_steps if "other_cores" in st]
    other_med = statistics.median(other) if other else None
    shared = other_med is not None and other_med > 0.15

    demo = next((b for n, b in results.items() if n.endswith("-demo")), next(iter(results.values())))
    get = lambda b, lab, key: b["servers"].get(lab, {}).get(key)
    ours_sat, mosec_sat = get(demo, "ours", "saturation_rps"), get(demo, "mosec", "saturation_rps")

    def le(a, b):
        return None if a is None or b is None else a <= b

    goal_met = {}
    for n, b in results.items():
        goal_met[f"saturation_ge_mosec[{n}]"] = le(get(b, "mosec", "saturation_rps"), get(b, "ours", "saturation_rps"))
        p99, errs = get(b, "ours", "p99_ms_80pct"), get(b, "ours", "errors_80pct")
        goal_met[f"p99_le_25ms_at_80pct_0_errors[{n}]"] = None if p99 is None else p99 <= 25 and errs == 0
        goal_met[f"p99_at_800_le_mosec[{n}]"] = le(get(b, "ours", "p99_ms_800rps"), get(b, "mosec", "p99_ms_800rps"))
    goal_met[f"cpu_per_request_le_0.25ms[{demo['name']}]"] = le(get(demo, "ours", "cpu_ms_per_request_at_saturation"),
                                                                0.25)
    result = {
        "bench": "p10_serving: run_serve vs Mosec vs LitServe on the same bundles, one inference worker each, ORT "
                 "1 intra-op thread without spinning, each server's own dynamic batching at 32 rows / 5 ms; open-loop "
                 "load (run_loadtest in its own process) on 127.0.0.1, latency from the scheduled send time",
        "machine": {**info0, "load_avg_1m_5m_15m_at_end": [round(x, 2) for x in os.getloadavg()],
                    "machine_busy_cores_mean": round((machine_busy_s() - busy0) / (time.perf_counter() - wall0), 3),
                    "other_cores_median_per_step": other_med,
                    "shared": shared,
                    "note": f"{os.cpu_count()} cores shared by the server, the load generator and any other job "
                            "(other_cores per step: what the rest of the machine used during the measured window); "
                            + ("ANOTHER JOB SHARED THE CORES: rerun on an idle machine" if shared
                               else "the machine was otherwise idle"),
                    "nice": os.nice(0), "autogroup": autogroup()},
        "ours": {"server": "run_serve", "bundle": demo["name"], "saturation_rps": ours_sat},
        "peer": {"server": f"mosec {peer.get('versions', {}).get('mosec', '?')}", "bundle": demo["name"],
                 "saturation_rps": mosec_sat},
        "ratio": (ours_sat / mosec_sat) if ours_sat and mosec_sat else None,
        "goal": GOAL + " (ratio = our saturation / Mosec's on the demo bundle: higher is better)",
        "goal_met": goal_met,
        "bundles": results,
        **({"bundles_missing": missing} if missing else {}),
        "peers": peer,
        "settings": {"servers": labels, "step_seconds": args.step_seconds, "warmup_s": args.warmup,
                     "point_seconds": args.point_seconds, "start_rate": args.start_rate, "factor": args.factor,
                     "refine": args.refine, "retries": args.retries, "max_batch_size": 32, "max_delay_ms": 5,
                     "ort_threads": 1,
                     "request_timeout_s": 10, "serve_args": args.serve_args, "quick": args.quick,
                     "paused_between_steps": args.pause,
                     "saturation": "highest offered rate with >= 95% of it achieved and >= 99% 2xx",
                     "body": "POST {\"input\": 28x28 pixel values} to /v1/models/<bundle>/predict"},
        "wall_s": round(wall, 1),
    }
    write_result("p10_serving", result, out_path)
    try:
        plots(results, out_dir, out_path.stem)  # named after the JSON: another --out keeps the default's plots
    except Exception as err:  # noqa: BLE001 - the JSON is written; a plot failure is reported, not fatal
        log(f"(plots failed: {err})")
    log(f"== {wall:.0f} s; ours {ours_sat} req/s vs mosec {mosec_sat} on {demo['name']}; goal_met {goal_met}"
        + ("; ANOTHER JOB SHARED THE CORES" if shared else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
