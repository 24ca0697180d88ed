"""Model bundles, contract `dlm-bundle/1`: artifacts/<name>/<version>/ with manifest.json, ONNX graphs,
reference.npz (fixed inputs and torch's outputs per graph), drift_reference.npz (validation-split
statistics) and any task files (tokenizer, index, documents), every file under a sha256 in the manifest.

manifest.json (core/README.md documents every field):
    schema, name, version, task, created, provenance{project, run_dir, git_commit, dataset, split_seed, seed,
    config}, graphs{role: {file, inputs[{name, dtype, shape}], outputs[...]}}, preprocess{type: image|text},
    postprocess{type: softmax_topk|threshold|seq2seq_decode|knn}, reference{file, tolerance},
    drift{file, split, rows, features[], prediction, embedding}, metrics{split, headline, values{}}, files{}

This module is the format only (torch- and onnxruntime-free): dlm_core.bundle_write.save_bundle writes a
bundle and self-checks it through dlm_core.predictors, which serve only bundles whose schema, checksums and
self-check pass.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

import numpy as np

from .data.registry import sha256_file
from .errors import DlmError
from .git import git_commit
from .io import read_json

SCHEMA = "dlm-bundle/1"
MANIFEST = "manifest.json"
REFERENCE = "reference.npz"
DRIFT_REFERENCE = "drift_reference.npz"
MIN_DRIFT_ROWS = 500

# task -> (preprocess types it may use, postprocess type)
TASKS = {
    "image-classification": (("image",), "softmax_topk"),
    "text-classification": (("text", "ngrams"), "softmax_topk"),
    "anomaly-detection": (("image",), "threshold"),
    "translation": (("text",), "seq2seq_decode"),
    "text-retrieval": (("text",), "knn"),
}
# type -> {field: python type(s)}; every field is required
PREPROCESS_FIELDS = {
    "image": {"graph_input": str, "height": int, "width": int, "channels": int, "scale": float, "mean": list,
              "std": list, "layout": str, "background": str},
    "text": {"graph_input": str, "tokenizer": str, "max_tokens": int, "pad_id": int, "add_special_tokens": bool,
             "truncate": bool},
    # TF-IDF n-grams (predictors/ngrams.py): the vocabulary file, and the graph's (ids, weights) inputs
    "ngrams": {"ids_input": str, "weights_input": str, "vocabulary": str},
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
    pre_types, post_type = TASKS[m["task"]]
    pre_type = m["preprocess"].get("type") if m["preprocess"].get("type") in pre_types else pre_types[0]
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
    for pre_type_, key in (("text", "tokenizer"), ("ngrams", "vocabulary")):
        if pre_type == pre_type_ and m["preprocess"].get(key) not in m["files"]:
            problems.append(f"manifest.preprocess.{key}: {m['preprocess'].get(key)!r} is not in manifest.files")
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


# ------------------------------------------------------------------------------------------------ provenance

def provenance(project: str, run_dir, dataset: str, split_seed: int, seed: int, config: dict) -> dict:
    return {"project": project, "run_dir": str(run_dir), "git_commit": git_commit(), "dataset": dataset,
            "split_seed": int(split_seed), "seed": int(seed),
            "config": {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool, list, type(None)))}}


# ------------------------------------------------------------------------------------------------- finding

def find_bundles(root: str | os.PathLike | None = None) -> list[Path]:
    root = Path(root) if root is not None else artifacts_root()
    return sorted(p.parent for p in root.glob(f"*/*/{MANIFEST}"))


def latest_bundle(name: str, root: str | os.PathLike | None = None, among: list[Path] | None = None) -> Path:
    """The newest version (by the manifest's `created`, then modification time) of bundle `name` (or of the
    version folders `among`)."""
    root = Path(root) if root is not None else artifacts_root()
    versions = [p / MANIFEST for p in among] if among is not None else list((root / name).glob(f"*/{MANIFEST}"))
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
