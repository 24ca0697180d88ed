"""deploy/: the Kubernetes manifests and the KServe InferenceService, checked offline (no cluster is reachable here).

- Every manifest under deploy/k8s passes the Kubernetes API's schemas for 1.30 and 1.37 with kubernetes-validate
  (the schemas ship in its wheel; strict: a field the API does not know is an error, as kubectl's default
  --validate=strict makes the API server do).
- deploy/kserve/inferenceservice.yaml passes the v1beta1 openAPIV3Schema of KServe v0.20.0's InferenceService
  CRD (vendored in deploy/kserve/schema/, with its source), as written and with unknown fields forbidden, and its
  metadata passes Kubernetes' ObjectMeta (the CRD types metadata only as "an object").
- The wiring, in plain Python: selectors and labels, ports, probe paths that are GET routes of the server (read
  from its routers' source), run_serve's flags (parsed by its own parser), the Secret's keys, the claim, the
  security settings, and the InferenceService agreeing with the Deployment.
- Each check can fail: broken copies are rejected.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from p10_serving.cli import serve_parser

ROOT = Path(__file__).resolve().parents[1]
HTTP = ROOT / "p10_serving" / "src" / "p10_serving" / "http"  # the server's routers, one file per surface
K8S = ROOT / "deploy" / "k8s"
ISVC_FILE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
ISVC_SCHEMA = ROOT / "deploy" / "kserve" / "schema" / "inferenceservice-v1beta1.schema.json"
K8S_VERSIONS = ("1.30", "1.37")  # the oldest Kubernetes we claim, and the newest kubernetes-validate 1.37.0 ships
SECRET_TEMPLATE = "secret.template.yaml"  # applied by hand, so deliberately not in kustomization.yaml
PORT = 8000
UID = 10001  # docker/Dockerfile.serve's user


def _server_routes() -> dict[str, set[str]]:
    """path -> HTTP methods, read from the routers' decorators (@router.get("/v2/health/ready", ...)) without
    importing the app."""
    routes: dict[str, set[str]] = {}
    for path in sorted(HTTP.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            for dec in getattr(node, "decorator_list", []):
                if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)
                        and dec.func.attr in ("get", "post", "put", "patch", "delete") and dec.args
                        and isinstance(dec.args[0], ast.Constant) and isinstance(dec.args[0].value, str)):
                    routes.setdefault(dec.args[0].value, set()).add(dec.func.attr.upper())
    return routes


ROUTES = _server_routes()
GET_ROUTES = {path for path, methods in ROUTES.items() if "GET" in methods}


def _load(path: Path) -> dict:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]  # one object per file
    return doc


def _k8s() -> dict[str, dict]:
    return {p.name: _load(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"}


def _validate_k8s(doc: dict, version: str) -> None:
    assert kubernetes_validate.validate(doc, version, strict=True) == version


@functools.cache
def _isvc_validator(strict: bool) -> jsonschema.Draft7Validator:
    schema = json.loads(ISVC_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(_forbid_unknown(schema) if strict else schema)


def _forbid_unknown(schema):
    """The CRD schema with additionalProperties: false on every object that lists its properties and does not
    keep unknown fields (x-kubernetes-preserve-unknown-fields): what the API server's strict field validation
    enforces. The schema as written only types the known fields; the server prunes or rejects the rest."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _forbid_unknown(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = _forbid_unknown(out[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [_forbid_unknown(s) for s in out[key]]
    return out


# --- schemas -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", sorted(_k8s()))
def test_k8s_manifest_passes_the_kubernetes_schema(name, version):
    _validate_k8s(_k8s()[name], version)


def test_the_manifests_are_the_expected_kinds_and_kustomize_lists_them():
    kinds = {doc["kind"]: (doc["apiVersion"], name) for name, doc in _k8s().items()}
    assert {kind: api for kind, (api, _) in kinds.items()} == {
        "Deployment": "apps/v1", "Service": "v1", "HorizontalPodAutoscaler": "autoscaling/v2",
        "PodDisruptionBudget": "policy/v1", "Secret": "v1", "PersistentVolumeClaim": "v1"}
    assert kinds["Secret"][1] == SECRET_TEMPLATE
    kustomization = _load(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(set(_k8s()) - {SECRET_TEMPLATE})


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed: kustomize's rendering unchecked")
def test_kustomize_renders_the_listed_manifests_unchanged():
    """`kubectl kustomize` (offline: it only reads the folder) gives back exactly the listed objects."""
    proc = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rendered = sorted((d for d in yaml.safe_load_all(proc.stdout) if d), key=lambda d: d["kind"])
    listed = sorted((_k8s()[f] for f in _load(K8S / "kustomization.yaml")["resources"]), key=lambda d: d["kind"])
    assert rendered == listed


def _set(doc: dict, path: str, value) -> dict:
    """A copy of doc with the field at a dotted path (list indices as numbers) set; value DELETE removes it."""
    doc = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = doc
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


DELETE = object()
CONTAINER = "spec.template.spec.containers.0"
BROKEN_K8S = {
    "probe port as a list": ("deployment.yaml", f"{CONTAINER}.readinessProbe.httpGet.port", [PORT]),
    "misspelt container field": ("deployment.yaml", f"{CONTAINER}.imagePulPolicy", "IfNotPresent"),
    "container without a name": ("deployment.yaml", f"{CONTAINER}.name", DELETE),
    "replicas as a string": ("deployment.yaml", "spec.replicas", "2"),
    "service port as a string": ("service.yaml", "spec.ports.0.port", "8000"),
    "HPA utilisation with a percent sign": ("hpa.yaml", "spec.metrics.0.resource.target.averageUtilization",
                                            "70%"),
    "misspelt PDB field": ("pdb.yaml", "spec.minAvailables", 1),
    "secret data as a list": (SECRET_TEMPLATE, "stringData", ["DLM_STORE_URL"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN_K8S))
def test_kubernetes_schema_rejects_a_broken_copy(case):
    name, path, value = BROKEN_K8S[case]
    broken = _set(_k8s()[name], path, value)
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        _validate_k8s(broken, K8S_VERSIONS[0])
    _assert_about(caught.value, path)


def _assert_about(error: jsonschema.ValidationError, path: str) -> None:
    """The error is about the field that was broken (at its path, or naming it), not about something else."""
    field = path.split(".")[-1]
    assert field in [str(p) for p in error.path] or repr(field) in error.message, (list(error.path), error.message)


def test_the_vendored_kserve_schema_says_where_it_came_from():
    comment = json.loads(ISVC_SCHEMA.read_text())["$comment"]
    assert "KServe v0.20.0" in comment and "1fb781055dd1567164358233e1125142ca6ef1fe" in comment
    assert "github.com/kserve/kserve/blob/v0.20.0/config/crd/full/serving.kserve.io_inferenceservices.yaml" in comment


@pytest.mark.parametrize("strict", [False, True], ids=["as-written", "unknown-fields-forbidden"])
def test_inferenceservice_passes_the_kserve_crd_schema(strict):
    isvc = _load(ISVC_FILE)
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    _isvc_validator(strict).validate(isvc)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_inferenceservice_metadata_is_valid_object_meta(version):
    """The CRD schema says only `metadata: {type: object}`; the API server checks it as ObjectMeta."""
    _validate_k8s({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _load(ISVC_FILE)["metadata"]}, version)


PREDICTOR = "spec.predictor"
BROKEN_ISVC = {  # case: (path, value, rejected by the schema as written too)
    "probe port as a list": (f"{PREDICTOR}.containers.0.readinessProbe.httpGet.port", [PORT], True),
    "container port as a string list": (f"{PREDICTOR}.containers.0.ports.0.containerPort", ["8000"], True),
    "container without a name": (f"{PREDICTOR}.containers.0.name", DELETE, True),
    "scale metric KServe does not know": (f"{PREDICTOR}.scaleMetric", "gpu", True),
    "no predictor": (PREDICTOR, DELETE, True),
    # fields the CRD does not have: the schema as written lets them through (the API server would drop them or,
    # under strict field validation, refuse them); the strict copy refuses them
    "replicas is not a predictor field": (f"{PREDICTOR}.replicas", 2, False),
    "misspelt container field": (f"{PREDICTOR}.containers.0.imagePulPolicy", "IfNotPresent", False),
}


@pytest.mark.parametrize("case", sorted(BROKEN_ISVC))
def test_kserve_schema_rejects_a_broken_copy(case):
    path, value, as_written = BROKEN_ISVC[case]
    broken = _set(_load(ISVC_FILE), path, value)
    with pytest.raises(jsonschema.ValidationError) as caught:
        _isvc_validator(True).validate(broken)
    _assert_about(caught.value, path)
    assert _isvc_validator(False).is_valid(broken) is not as_written


# --- wiring ------------------------------------------------------------------------------------------------------


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _port_of(probe: dict, container: dict) -> int | None:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == port), None)


def _pod_problems(where: str, pod: dict, container: dict, secret: dict, claim: str) -> list[str]:
    """What is wrong with one pod spec and its server container (the Deployment's, the InferenceService's)."""
    bad = []
    if not container.get("image"):
        bad.append(f"{where}: the container has no image")
    try:
        args = serve_parser().parse_args(container.get("args", []))
    except SystemExit:
        bad.append(f"{where}: run_serve refuses the arguments {container.get('args')}")
    else:
        if not (args.all and args.artifacts == "/artifacts" and args.host == "0.0.0.0" and args.port == PORT):
            bad.append(f"{where}: run_serve's arguments are not --all --artifacts /artifacts --host 0.0.0.0 "
                       f"--port {PORT}")
    if [p["containerPort"] for p in container.get("ports", [])] != [PORT]:
        bad.append(f"{where}: the container port is not {PORT}")
    env = _env(container)
    if env.get("PORT", {}).get("value") != str(PORT):
        bad.append(f"{where}: PORT (read by the image's HEALTHCHECK) is not {PORT}")
    for var in ("DLM_STORE_URL", "DLM_ADMIN_TOKEN"):
        ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            bad.append(f"{where}: {var} is not taken from a Secret")
        elif ref["name"] != secret["metadata"]["name"] or ref["key"] not in secret["stringData"]:
            bad.append(f"{where}: {var} names {ref['name']}/{ref['key']}, not a key of the Secret template")
    for kind, path in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live"),
                       ("startupProbe", "/v2/health/live")):
        probe = container.get(kind)
        if not probe:
            bad.append(f"{where}: no {kind}")
            continue
        if probe["httpGet"]["path"] != path or path not in GET_ROUTES:
            bad.append(f"{where}: {kind} asks {probe['httpGet']['path']}, not the server's {path}")
        if _port_of(probe, container) != PORT:
            bad.append(f"{where}: {kind} does not reach port {PORT}")
    requests = container.get("resources", {}).get("requests", {})
    if "cpu" not in requests or "memory" not in requests or not container["resources"].get("limits"):
        bad.append(f"{where}: resources need CPU and memory requests (CPU scaling reads them) and limits")
    sc, psc = container.get("securityContext", {}), pod.get("securityContext", {})
    if not (sc.get("runAsNonRoot") and psc.get("runAsNonRoot") and psc.get("runAsUser") == UID
            and sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
            and sc.get("capabilities", {}).get("drop") == ["ALL"]
            and sc.get("seccompProfile", {}).get("type") == psc.get("seccompProfile", {}).get("type")
            == "RuntimeDefault"):
        bad.append(f"{where}: the security context is not non-root {UID}, read-only root, no escalation, "
                   "no capabilities, RuntimeDefault seccomp")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    artifacts = volumes.get(mounts.get("/artifacts", {}).get("name"), {})
    if not (artifacts.get("persistentVolumeClaim", {}).get("claimName") == claim
            and artifacts["persistentVolumeClaim"].get("readOnly") and mounts["/artifacts"].get("readOnly")):
        bad.append(f"{where}: /artifacts is not the claim {claim} mounted read-only")
    if "emptyDir" not in volumes.get(mounts.get("/tmp", {}).get("name"), {}):
        bad.append(f"{where}: /tmp is not an emptyDir (the root file system is read-only)")
    return bad


def wiring_problems(k8s: dict[str, dict], isvc: dict) -> list[str]:
    deploy, service, hpa, pdb = (k8s[f] for f in ("deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"))
    secret, pvc = k8s[SECRET_TEMPLATE], k8s["pvc.yaml"]
    pod = deploy["spec"]["template"]["spec"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    (container,) = pod["containers"]
    claim = pvc["metadata"]["name"]
    bad = _pod_problems("Deployment", pod, container, secret, claim)

    def selects(selector: dict) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    if deploy["spec"]["selector"]["matchLabels"] != service["spec"]["selector"] or not selects(
            service["spec"]["selector"]):
        bad.append("Service: its selector is not the Deployment's pod selector")
    if not selects(deploy["spec"]["selector"]["matchLabels"]):
        bad.append("Deployment: its selector does not match its own pod labels")
    if not selects(pdb["spec"]["selector"]["matchLabels"]):
        bad.append("PodDisruptionBudget: its selector matches no pod of the Deployment")
    (svc_port,) = service["spec"]["ports"]
    target = svc_port["targetPort"]
    if (target if isinstance(target, int) else _port_of({"httpGet": {"port": target}}, container)) != PORT:
        bad.append(f"Service: targetPort {target!r} is not the container's port {PORT}")
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref["apiVersion"], ref["kind"], ref["name"]) != ("apps/v1", "Deployment", deploy["metadata"]["name"]):
        bad.append("HorizontalPodAutoscaler: scaleTargetRef is not the Deployment")
    if not hpa["spec"]["minReplicas"] <= deploy["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]:
        bad.append("HorizontalPodAutoscaler: the Deployment's replicas are outside minReplicas..maxReplicas")
    if [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"] != ["cpu"]:
        bad.append("HorizontalPodAutoscaler: it does not scale on CPU")
    if not 0 < pdb["spec"].get("minAvailable", 0) < hpa["spec"]["minReplicas"]:
        bad.append("PodDisruptionBudget: minAvailable must leave one replica to evict (drains would block)")
    if not secret["stringData"].get("DLM_STORE_URL", "").startswith("postgresql://"):
        bad.append("Secret: DLM_STORE_URL is not a postgresql:// URL")
    annotations = deploy["spec"]["template"]["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/port") != str(PORT) or annotations.get("prometheus.io/path") not in GET_ROUTES:
        bad.append("Deployment: the scrape annotations do not name the server's /metrics")

    predictor = isvc["spec"]["predictor"]
    (server,) = [c for c in predictor["containers"] if c["name"] == "kserve-container"]
    bad += _pod_problems("InferenceService", predictor, server, secret, claim)
    if _env(server).get("PROTOCOL", {}).get("value") != "v2" or "/v2/models/{name}/infer" not in ROUTES:
        bad.append("InferenceService: the predictor does not declare PROTOCOL=v2")
    for key in ("image", "args", "resources", "securityContext"):
        if server.get(key) != container.get(key):
            bad.append(f"InferenceService: the container's {key} differs from the Deployment's")
    if {k: v for k, v in _env(server).items() if k != "PROTOCOL"} != _env(container):
        bad.append("InferenceService: the container's env differs from the Deployment's")
    if (predictor.get("minReplicas"), predictor.get("maxReplicas")) != (hpa["spec"]["minReplicas"],
                                                                       hpa["spec"]["maxReplicas"]):
        bad.append("InferenceService: its replica range differs from the HorizontalPodAutoscaler's")
    return bad


def test_the_wiring_holds():
    assert {"/v2/health/ready", "/v2/health/live", "/metrics"} <= GET_ROUTES
    assert "POST" in ROUTES["/v2/models/{name}/infer"]
    assert wiring_problems(_k8s(), _load(ISVC_FILE)) == []


POD = "spec.template.spec"
BROKEN_WIRING = {  # case: (file, path, value, a word of the expected problem)
    "service selects other pods": ("service.yaml", "spec.selector.app.kubernetes.io/name", "dlm", "Service"),
    "readiness on a route the server lacks": ("deployment.yaml", f"{CONTAINER}.readinessProbe.httpGet.path",
                                              "/healthz", "readinessProbe"),
    "liveness on the wrong named port": ("deployment.yaml", f"{CONTAINER}.livenessProbe.httpGet.port", "metrics",
                                         "livenessProbe"),
    "container port differs from --port": ("deployment.yaml", f"{CONTAINER}.ports.0.containerPort", 8080,
                                           "container port"),
    "a flag run_serve lacks": ("deployment.yaml", f"{CONTAINER}.args", ["--all", "--bundles", "/artifacts"],
                               "refuses"),
    "no image": ("deployment.yaml", f"{CONTAINER}.image", DELETE, "image"),
    "env reads a key the Secret lacks": ("deployment.yaml", f"{CONTAINER}.env.1.valueFrom.secretKeyRef.key",
                                         "ADMIN_TOKEN", "DLM_ADMIN_TOKEN"),
    "secret key renamed": (SECRET_TEMPLATE, "stringData", {"STORE_URL": "postgresql://x", "DLM_ADMIN_TOKEN": "x"},
                           "DLM_STORE_URL"),
    "writable artifacts": ("deployment.yaml", f"{CONTAINER}.volumeMounts.0.readOnly", False, "/artifacts"),
    "root file system writable": ("deployment.yaml", f"{CONTAINER}.securityContext.readOnlyRootFilesystem", False,
                                  "security"),
    "runs as root": ("deployment.yaml", f"{POD}.securityContext.runAsUser", 0, "security"),
    "claim name typo": ("deployment.yaml", f"{POD}.volumes.0.persistentVolumeClaim.claimName", "dlm-artifact",
                        "/artifacts"),
    "HPA scales another deployment": ("hpa.yaml", "spec.scaleTargetRef.name", "serve", "scaleTargetRef"),
    "PDB blocks every eviction": ("pdb.yaml", "spec.minAvailable", 2, "minAvailable"),
    "isvc speaks v1": ("kserve", f"{PREDICTOR}.containers.0.env.0.value", "v1", "PROTOCOL"),
    "isvc runs another image": ("kserve", f"{PREDICTOR}.containers.0.image", "localhost/dlm-serve:0.1",
                                "image"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_WIRING))
def test_the_wiring_check_catches_a_broken_copy(case):
    name, path, value, word = BROKEN_WIRING[case]
    k8s, isvc = _k8s(), _load(ISVC_FILE)
    if name == "kserve":
        isvc = _set(isvc, path, value)
    elif path.startswith("spec.selector.app.kubernetes.io/"):  # a label key holds dots: set it directly
        k8s[name] = copy.deepcopy(k8s[name])
        k8s[name]["spec"]["selector"]["app.kubernetes.io/name"] = value
    else:
        k8s[name] = _set(k8s[name], path, value)
    problems = wiring_problems(k8s, isvc)
    assert problems and any(word in p for p in problems), problems
