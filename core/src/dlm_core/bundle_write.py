"""Writing a dlm-bundle/1 (the format: dlm_core.bundle): staged in a temp folder, checked through the bundle's
own torch-free predictor (dlm_core.predictors), then renamed into place. Needs onnxruntime; never torch.
Nothing that the predictors import may import this module (tests/test_import_cycles.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .bundle import DRIFT_REFERENCE, MANIFEST, REFERENCE, SCHEMA, Bundle, artifacts_root, validate_manifest
from .data.registry import sha256_file
from .errors import DlmError
from .io import public_modes, write_json
from .onnx_runtime import graph_signature
from .predictors import drift_reference, load_predictor


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
            seal()  # provisional, so that the predictor can open the staged bundle
            predictor = load_predictor(staging, verify=False)
            arrays, section = drift_reference(predictor, drift_inputs)
            np.savez(staging / DRIFT_REFERENCE, **arrays)
            manifest["drift"] = {"file": DRIFT_REFERENCE, "split": "val", **section}
        seal()
        problems = validate_manifest(manifest)
        if problems:
            raise DlmError(f"bundle {name}/{version} does not follow {SCHEMA}: {'; '.join(problems)}")
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
