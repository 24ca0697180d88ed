"""Which bundles the server loads. Every bundle is loaded through `load_predictor` (schema + sha256 of every
file) and replays its reference.npz (`self_check`) BEFORE the server starts; one that fails is refused with
one line naming the bundle and the reason, and the server does not start (a half-working server that answers
from a tampered model is worse than none)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dlm_core.bundle import find_bundles, latest_bundle
from dlm_core.errors import DlmError
from dlm_core.predictors import Predictor, load_predictor


def load_models(paths: list[str | os.PathLike], threads: int = 1) -> list[Predictor]:
    """Verified, self-checked predictors for the bundle folders `paths` (DlmError on the first refusal)."""
    if not paths:
        raise DlmError("no bundle to serve; pass bundle folders (artifacts/<name>/<version>) or --all")
    out, seen = [], set()
    for path in paths:
        try:
            p = load_predictor(path, threads=threads)
            p.self_check()
        except DlmError as err:
            raise DlmError(f"refusing bundle {path}: {err}") from None
        if (p.name, p.version) in seen:
            raise DlmError(f"bundle {p.name} version {p.version} is given twice ({path})")
        seen.add((p.name, p.version))
        out.append(p)
    return out


def all_bundles(root: str | os.PathLike, skip: set[tuple[str, str]] = frozenset()) -> list[Path]:
    """The newest version of every bundle under `root` (run_serve --all), leaving out the (name, version) pairs in
    `skip` (the store's rejected and rolled-back versions) and folders whose manifest is not there yet or is
    unreadable (a bundle being written; it is verified file by file at load anyway)."""
    found = find_bundles(root)
    if not found:
        raise DlmError(f"no bundle under {root}; export some first (make demo exports them all)")
    out = []
    for name in sorted({p.parent.name for p in found}):
        versions = [p for p in found if p.parent.name == name and (name, manifest_version(p)) not in skip]
        if versions:
            out.append(latest_bundle(name, root, among=versions))
    return out


def manifest_version(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / "manifest.json").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_verified(path: str | os.PathLike, sha256: str, threads: int = 1) -> Predictor:
    """A bundle a restart goes back to (a swapped-in retrain): verified and self-checked again, and refused unless
    it is still the bundle that was served (the same manifest sha256)."""
    p = load_models([path], threads=threads)[0]
    if p.sha256 != sha256:
        raise DlmError(f"bundle {path} changed since it was served (sha256 {p.sha256[:12]}, was {sha256[:12]})")
    return p
