"""N run_serve replicas behind HAProxy, as one process tree for the bench (issue #32): the replicas share one
SQLite state dir (the store), HAProxy balances round robin and health-checks /v2/health/ready. SIGINT/SIGTERM
stops HAProxy and the replicas.

    python bench/peers/replicas.py BUNDLE --replicas 2 --port 8000 [--haproxy PATH] [-- run_serve flags...]
"""

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dlm_core.net import free_port
from p10_serving.tools.haproxy import find_haproxy, haproxy_config


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--haproxy", default=find_haproxy() or "haproxy")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = ap.parse_args(argv[:cut]), argv[cut + 1:]  # after --: flags for every run_serve
    run_serve = str(Path(sys.executable).parent / "run_serve")
    tmp = Path(tempfile.mkdtemp(prefix="dlm-replicas-"))
    procs = []

    def stop(*_):
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    ports = [free_port() for _ in range(args.replicas)]
    for i, port in enumerate(ports):
        procs.append(subprocess.Popen([run_serve, args.bundle, "--port", str(port), "--state-dir", str(tmp / "state"),
                                       "--replica-id", f"r{i + 1}", *extra]))
    for port in ports:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or any(p.poll() is not None for p in procs):
                print("a replica did not become ready", file=sys.stderr)
                stop()
            time.sleep(0.05)
    (tmp / "haproxy.cfg").write_text(haproxy_config(f"127.0.0.1:{args.port}", {
        f"r{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(ports)}, check="inter 1s"))
    procs.append(subprocess.Popen([args.haproxy, "-f", str(tmp / "haproxy.cfg"), "-db"]))
    while all(p.poll() is None for p in procs):
        time.sleep(0.5)
    stop()
    return 1


if __name__ == "__main__":
    sys.exit(main())
