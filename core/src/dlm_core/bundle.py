"""Model bundles: artifacts/<name>/<version>/ with weights, model.onnx, preprocess.json, labels.json,
metrics.json, reference inputs/outputs and manifest.json holding the sha256 of every other file.

Serving loads only bundles whose checksums match (load_bundle refuses the others).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .data.registry import sha256_file
from .errors import DlmError
from .io import read_json, write_json

MANIFEST = "manifest.json"


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

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise DlmError(f"bundle {self.path} has no file {name!r}; it has {sorted(self.manifest['files'])}")
        return self.path / name

    def json(self, name: str):
        return read_json(self.file(name))


def save_bundle(name: str, version: str, files: dict[str, str | os.PathLike | bytes], *,
                preprocess: dict | None = None, labels: list | dict | None = None, metrics: dict | None = None,
                extra: dict | None = None, root: str | os.PathLike | None = None, overwrite: bool = False) -> Bundle:
    """Write a bundle atomically: built in a temp folder, then renamed into place.

    files: bundle-relative name -> source path (copied) or bytes. preprocess/labels/metrics become JSON files.
    """
    root = Path(root) if root is not None else artifacts_root()
    final = root / name / version
    if final.exists() and not overwrite:
        raise DlmError(f"bundle {final} already exists; pick another --version or pass --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=final.parent))
    try:
        for rel, src in files.items():
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, (bytes, bytearray)):
                dest.write_bytes(src)
            else:
                shutil.copyfile(src, dest)
        for fname, obj in (("preprocess.json", preprocess), ("labels.json", labels), ("metrics.json", metrics)):
            if obj is not None:
                write_json(staging / fname, obj)
        listed = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        manifest = {"name": name, "version": version, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "files": {rel: sha256_file(staging / rel) for rel in listed}, **(extra or {})}
        write_json(staging / MANIFEST, manifest)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return Bundle(final, manifest)


def verify_bundle(path: str | os.PathLike) -> list[str]:
    """Problems found (empty list = the bundle is intact)."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        return [f"{path} has no {MANIFEST}"]
    try:
        manifest = read_json(path / MANIFEST)
    except json.JSONDecodeError as err:
        return [f"{MANIFEST} is not valid JSON: {err}"]
    problems = []
    for rel, digest in manifest.get("files", {}).items():
        f = path / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(f) != digest:
            problems.append(f"{rel}: sha256 mismatch (file changed after export)")
    listed = set(manifest.get("files", {})) | {MANIFEST}
    for f in path.rglob("*"):
        if f.is_file() and str(f.relative_to(path)) not in listed:
            problems.append(f"{f.relative_to(path)}: not in the manifest")
    return problems


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Open a bundle after checking every checksum; DlmError if anything does not match."""
    path = Path(path)
    if not path.is_dir():
        raise DlmError(f"bundle {path} does not exist; export one first (e.g. run_cnn_export)")
    problems = verify_bundle(path)
    if problems:
        raise DlmError(f"bundle {path} failed verification: {'; '.join(problems)}")
    return Bundle(path, read_json(path / MANIFEST))


def find_bundles(root: str | os.PathLike | None = None) -> list[Path]:
    root = Path(root) if root is not None else artifacts_root()
    return sorted(p.parent for p in root.glob(f"*/*/{MANIFEST}"))


def latest_bundle(name: str, root: str | os.PathLike | None = None) -> Path:
    root = Path(root) if root is not None else artifacts_root()
    versions = sorted((p for p in (root / name).glob(f"*/{MANIFEST}")), key=lambda p: p.stat().st_mtime)
    if not versions:
        raise DlmError(f"no bundle named {name!r} under {root}; export one first")
    return versions[-1].parent
