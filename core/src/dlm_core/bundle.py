"""Model bundles, contract `dlm-bundle/1`: artifacts/<name>/<version>/ with manifest.json, ONNX graphs,
reference.npz (fixed inputs and torch's outputs per graph), drift_reference.npz (validation-split
statistics) and any task files (tokenizer, index, documents), every file under a sha256 in the manifest.

manifest.json (core/README.md documents every field):
    schema, name, version, task, created, provenance{project, run_dir, git_commit, dataset, split_seed, seed,
    config}, graphs{role: {file, inputs[{name, dtype, shape}], outputs[...]}}, preprocess{type: image|text},
    postprocess{type: softmax_topk|threshold|seq2seq_decode|knn}, reference{file, tolerance},
    drift{file, split, rows, features[], prediction, embedding}, metrics{split, headline, values{}}, files{}

Importing this module never imports torch; writing a bundle needs onnxruntime (to read graph signatures).
Serving loads only bundles whose schema, checksums and self-check pass (dlm_core.predictors).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from .data.registry import sha256_file
from .errors import DlmError
from .io import public_modes, read_json, write_json

SCHEMA = "dlm-bundle/1"
MANIFEST = "manifest.json"
REFERENCE = "reference.npz"
DRIFT_REFERENCE = "drift_reference.npz"
MIN_DRIFT_ROWS = 500

# task -> (preprocess type, postprocess type)
TASKS = {
    "image-classification": ("image", "softmax_topk"),
    "text-classification": ("text", "softmax_topk"),
    "anomaly-detection": ("image", "threshold"),
    "translation": ("text", "seq2seq_decode"),
    "text-retrieval": ("text", "knn"),
}
# type -> {field: python type(s)}; every field is required
PREPROCESS_FIELDS = {
    "image": {"graph_input": str, "height": int, "width": int, "channels": int, "scale": float, "mean": list,
              "std": list, "layout": str, "background": str},
    "text": {"graph_input": str, "tokenizer": str, "max_tokens": int, "pad_id": int, "add_special_tokens": bool,
             "truncate": bool},
}
POSTPROCESS_FIELDS = {
    "softmax_topk": {"graph": str, "output": str, "labels": list, "top_k": int, "embedding_output": (str, type(None))},
    "threshold": {"graph": str, "output": str, "threshold": float, "higher_is_anomalous": bool, "labels": list,
                  "embedding_output": (str, type(None))},
    "seq2seq_decode": {"encoder_graph": str, "step_graph": str, "bos_id": int, "eos_id": int, "pad_id": int,
                       "max_output_tokens": int, "beam": int, "length_alpha": float, "no_repeat_ngram": int,
                       "cache": dict, "source_lang": str, "target_lang": str},
    "knn": {"graph": str, "output": str, "index": str, "documents": str, "metric": str, "default_k": int,
            "max_k": int},
}
DTYPES = {"float32", "float16", "int64", "int32", "int8", "uint8", "bool"}


def artifacts_root() -> Path:
    return Path(os.environ.get("DLM_ARTIFACTS", "artifacts"))


@dataclasses.dataclass
class Bundle:
    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @functools.cached_property
    def sha256(self) -> str:
        """The manifest's own sha256: it pins every other file's checksum, so it identifies the bundle."""
        return sha256_file(self.path / MANIFEST)

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise DlmError(f"bundle {self.path} has no file {name!r}; it has {sorted(self.manifest['files'])}")
        return self.path / name

    def json(self, name: str):
        return read_json(self.file(name))

    def npz(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.file(name), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def graph_file(self, role: str) -> Path:
        return self.file(self.manifest["graphs"][role]["file"])


# ---------------------------------------------------------------------------------------------- validation

def _check_fields(obj, fields: dict, where: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: must be an object"]
    problems = []
    for key, typ in fields.items():
        if key not in obj:
            problems.append(f"{where}.{key}: missing")
        elif typ is float and isinstance(obj[key], int) and not isinstance(obj[key], bool):
            continue
        elif not isinstance(obj[key], typ) or (typ is int and isinstance(obj[key], bool)):
            problems.append(f"{where}.{key}: expected {getattr(typ, '__name__', typ)}, got {type(obj[key]).__name__}")
    return problems


def _check_tensor_specs(specs, where: str) -> list[str]:
    if not isinstance(specs, list) or not specs:
        return [f"{where}: must be a non-empty list"]
    problems = []
    for i, s in enumerate(specs):
        problems += _check_fields(s, {"name": str, "dtype": str, "shape": list}, f"{where}[{i}]")
        if isinstance(s, dict) and s.get("dtype") not in DTYPES:
            problems.append(f"{where}[{i}].dtype: {s.get('dtype')!r} is not one of {sorted(DTYPES)}")
    return problems


def validate_manifest(m: dict) -> list[str]:
    """Every way `m` departs from dlm-bundle/1, each naming its field (empty list = valid)."""
    if not isinstance(m, dict):
        return ["manifest: must be a JSON object"]
    if m.get("schema") != SCHEMA:
        return [f"manifest.schema: expected {SCHEMA!r}, got {m.get('schema')!r} (re-export the bundle with this "
                "version of the project)"]
    problems = _check_fields(m, {"name": str, "version": str, "task": str, "created": str, "provenance": dict,
                                 "graphs": dict, "preprocess": dict, "postprocess": dict, "reference": dict,
                                 "drift": dict, "metrics": dict, "files": dict}, "manifest")
    if problems:
        return problems
    if m["task"] not in TASKS:
        return [f"manifest.task: {m['task']!r} is not one of {sorted(TASKS)}"]
    pre_type, post_type = TASKS[m["task"]]
    problems += _check_fields(m["provenance"], {"project": str, "run_dir": str, "git_commit": str, "dataset": str,
                                                "split_seed": int, "seed": int, "config": dict},
                              "manifest.provenance")
    if not m["graphs"]:
        problems.append("manifest.graphs: no graph")
    for role, g in m["graphs"].items():
        problems += _check_fields(g, {"file": str, "inputs": list, "outputs": list}, f"manifest.graphs.{role}")
        if isinstance(g, dict):
            problems += _check_tensor_specs(g.get("inputs"), f"manifest.graphs.{role}.inputs")
            problems += _check_tensor_specs(g.get("outputs"), f"manifest.graphs.{role}.outputs")
            if g.get("file") not in m["files"]:
                problems.append(f"manifest.graphs.{role}.file: {g.get('file')!r} is not in manifest.files")
    for section, want, table in (("preprocess", pre_type, PREPROCESS_FIELDS),
                                 ("postprocess", post_type, POSTPROCESS_FIELDS)):
        got = m[section].get("type")
        if got != want:
            problems.append(f"manifest.{section}.type: a {m['task']} bundle needs {want!r}, got {got!r}")
        else:
            problems += _check_fields(m[section], table[want], f"manifest.{section}")
    post = m["postprocess"]
    for key in ("graph", "encoder_graph", "step_graph"):
        if key in post and post[key] not in m["graphs"]:
            problems.append(f"manifest.postprocess.{key}: no graph named {post[key]!r}")
    for key in ("index", "documents"):
        if key in post and post[key] not in m["files"]:
            problems.append(f"manifest.postprocess.{key}: {post[key]!r} is not in manifest.files")
    if pre_type == "text" and m["preprocess"].get("tokenizer") not in m["files"]:
        problems.append(f"manifest.preprocess.tokenizer: {m['preprocess'].get('tokenizer')!r} is not in "
                        "manifest.files")
    problems += _check_fields(m["reference"], {"file": str, "tolerance": float}, "manifest.reference")
    problems += _check_fields(m["drift"], {"file": str, "split": str, "rows": int, "features": list,
                                           "prediction": str, "embedding": (str, type(None))}, "manifest.drift")
    if m["drift"].get("split") in ("train", "test"):
        problems.append("manifest.drift.split: the drift reference must come from the validation split")
    if isinstance(m["drift"].get("rows"), int) and m["drift"]["rows"] < MIN_DRIFT_ROWS:
        problems.append(f"manifest.drift.rows: {m['drift']['rows']} < {MIN_DRIFT_ROWS}")
    problems += _check_fields(m["metrics"], {"split": str, "headline": str, "values": dict}, "manifest.metrics")
    if isinstance(m["metrics"].get("values"), dict) and m["metrics"].get("headline") not in m["metrics"]["values"]:
        problems.append(f"manifest.metrics.headline: {m['metrics'].get('headline')!r} is not in metrics.values")
    for section in ("reference", "drift"):
        if isinstance(m[section].get("file"), str) and m[section]["file"] not in m["files"]:
            problems.append(f"manifest.{section}.file: {m[section]['file']!r} is not in manifest.files")
    return problems


def verify_bundle(path: str | os.PathLike) -> list[str]:
    """Problems found: schema, then checksums (empty list = the bundle follows the contract and is intact)."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        return [f"{path} has no {MANIFEST}"]
    try:
        manifest = read_json(path / MANIFEST)
    except json.JSONDecodeError as err:
        return [f"{MANIFEST} is not valid JSON: {err}"]
    problems = validate_manifest(manifest)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return problems
    for rel, digest in files.items():
        f = path / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(f) != digest:
            problems.append(f"{rel}: sha256 mismatch (file changed after export)")
    listed = set(files) | {MANIFEST}
    for f in path.rglob("*"):
        if f.is_file() and str(f.relative_to(path)) not in listed:
            problems.append(f"{f.relative_to(path)}: not in the manifest")
    return problems


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Open a bundle after checking its schema and every checksum; DlmError naming the first problems."""
    path = Path(path)
    if not path.is_dir():
        raise DlmError(f"bundle {path} does not exist; export one first (e.g. run_cnn_export RUN)")
    problems = verify_bundle(path)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DlmError(f"bundle {path} failed verification: {shown}")
    return Bundle(path, read_json(path / MANIFEST))


# ------------------------------------------------------------------------------------------------- writing

def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The commit the exporting code is at ('+dirty' if it has uncommitted changes), or 'unknown'."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def provenance(project: str, run_dir, dataset: str, split_seed: int, seed: int, config: dict) -> dict:
    return {"project": project, "run_dir": str(run_dir), "git_commit": git_commit(), "dataset": dataset,
            "split_seed": int(split_seed), "seed": int(seed),
            "config": {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool, list, type(None)))}}


def ort_session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session with `threads` intra-op threads (0 = ORT's default) and no spinning, so an
    idle server does not burn its cores."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def graph_signature(path: str | os.PathLike) -> dict:
    """inputs/outputs of an ONNX file as [{name, dtype, shape}] with -1 for every dynamic axis."""
    sess = ort_session(path, threads=0)

    def spec(arg) -> dict:
        dtype = arg.type.removeprefix("tensor(").removesuffix(")")
        dtype = {"float": "float32", "double": "float64", "float16": "float16"}.get(dtype, dtype)
        return {"name": arg.name, "dtype": dtype, "shape": [d if isinstance(d, int) else -1 for d in arg.shape]}

    return {"inputs": [spec(a) for a in sess.get_inputs()], "outputs": [spec(a) for a in sess.get_outputs()]}


def save_bundle(name: str, version: str, *, task: str, graphs: dict[str, str | os.PathLike], preprocess: dict,
                postprocess: dict, reference: dict[str, np.ndarray], metrics: dict, provenance: dict,
                drift_inputs=None, files: dict[str, str | os.PathLike | bytes] | None = None,
                reference_tolerance: float = 1e-4, root: str | os.PathLike | None = None,
                overwrite: bool = False, check=None) -> Bundle:
    """Write a dlm-bundle/1 atomically: staged in a temp folder next to the final one, checked, renamed.

    graphs: role -> ONNX file (copied as <role>.onnx). reference: "<role>.in.<input>" / "<role>.out.<output>"
    arrays (torch's outputs on fixed inputs). files: extra bundle files (name -> path or bytes).
    drift_inputs: raw validation-split inputs (>= 500); the bundle's own torch-free predictor turns them into
    drift_reference.npz (features, predictions, embeddings), so serving computes the same statistics.
    The staged bundle must pass validate_manifest, the predictor's self_check and `check(predictor)` (an
    exporter's own test, e.g. decoded tokens == torch's; raise DlmError to refuse) before it is renamed.
    """
    root = Path(root) if root is not None else artifacts_root()
    final = root / name / version
    if final.exists() and not overwrite:
        raise DlmError(f"bundle {final} already exists; pick another --version or pass --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=final.parent))
    try:
        manifest = {"schema": SCHEMA, "name": name, "version": version, "task": task,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "provenance": provenance, "graphs": {},
                    "preprocess": preprocess, "postprocess": postprocess,
                    "reference": {"file": REFERENCE, "tolerance": float(reference_tolerance)},
                    "drift": {}, "metrics": metrics, "files": {}}
        for rel, src in (files or {}).items():
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, (bytes, bytearray)):
                dest.write_bytes(src)
            else:
                shutil.copyfile(src, dest)
        for role, src in graphs.items():
            shutil.copyfile(src, staging / f"{role}.onnx")
            manifest["graphs"][role] = {"file": f"{role}.onnx", **graph_signature(staging / f"{role}.onnx")}
        np.savez(staging / REFERENCE, **reference)

        def seal() -> None:
            listed = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()
                            and p.name != MANIFEST)
            manifest["files"] = {rel: sha256_file(staging / rel) for rel in listed}
            write_json(staging / MANIFEST, manifest)

        if drift_inputs is not None:
            from .predictors import drift_reference, load_predictor

            seal()  # provisional, so that the predictor can open the staged bundle
            predictor = load_predictor(staging, verify=False)
            arrays, section = drift_reference(predictor, drift_inputs)
            np.savez(staging / DRIFT_REFERENCE, **arrays)
            manifest["drift"] = {"file": DRIFT_REFERENCE, "split": "val", **section}
        seal()
        problems = validate_manifest(manifest)
        if problems:
            raise DlmError(f"bundle {name}/{version} does not follow {SCHEMA}: {'; '.join(problems)}")
        from .predictors import load_predictor

        staged = load_predictor(staging, verify=False)  # just sealed and validated above: no second hashing
        staged.self_check()  # refuses above the tolerance
        if check is not None:
            check(staged)
        if final.exists():
            shutil.rmtree(final)
        public_modes(staging)  # mkdtemp made it 0700: a server running as another user could not read it
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return Bundle(final, manifest)


# ------------------------------------------------------------------------------------------------- finding

def find_bundles(root: str | os.PathLike | None = None) -> list[Path]:
    root = Path(root) if root is not None else artifacts_root()
    return sorted(p.parent for p in root.glob(f"*/*/{MANIFEST}"))


def latest_bundle(name: str, root: str | os.PathLike | None = None) -> Path:
    """The newest version (by the manifest's `created`, then modification time) of bundle `name`."""
    root = Path(root) if root is not None else artifacts_root()
    versions = list((root / name).glob(f"*/{MANIFEST}"))
    if not versions:
        raise DlmError(f"no bundle named {name!r} under {root}; export one first")

    def created(p: Path):
        try:
            return (str(read_json(p).get("created", "")), p.stat().st_mtime)
        except (json.JSONDecodeError, OSError):
            return ("", p.stat().st_mtime)

    return max(versions, key=created).parent


def bundle_size(path: str | os.PathLike) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
