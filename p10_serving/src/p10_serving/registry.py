"""Which bundles the server holds. Every bundle is loaded through `load_predictor` (schema + sha256 of every
file) and replays its reference.npz (`self_check`) BEFORE the server starts; one that fails is refused with
one line naming the bundle and the reason, and the server does not start (a half-working server that answers
from a tampered model is worse than none)."""

from __future__ import annotations

import os
from pathlib import Path

from dlm_core.bundle import find_bundles, latest_bundle
from dlm_core.errors import DlmError
from dlm_core.predictors import Predictor, load_predictor


class ModelNotFound(Exception):
    """Unknown model or version: answer 404."""


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


def all_bundles(root: str | os.PathLike) -> list[Path]:
    """The newest version of every bundle under `root` (run_serve --all)."""
    names = sorted({p.parent.name for p in find_bundles(root)})
    if not names:
        raise DlmError(f"no bundle under {root}; export some first (make demo exports them all)")
    return [latest_bundle(n, root) for n in names]


class Registry:
    """name -> version -> predictor, and each name's default version (the newest by the manifest's
    `created`, or the last given)."""

    def __init__(self, predictors: list[Predictor]):
        self.models: dict[str, dict[str, Predictor]] = {}
        self.default: dict[str, str] = {}
        for p in predictors:
            self.models.setdefault(p.name, {})[p.version] = p
            best = self.models[p.name].get(self.default.get(p.name, ""))
            if best is None or str(p.manifest.get("created", "")) >= str(best.manifest.get("created", "")):
                self.default[p.name] = p.version

    def add(self, p: Predictor) -> None:
        """A new version (a retrained model), not yet the default."""
        if p.version in self.models.setdefault(p.name, {}):
            raise DlmError(f"model {p.name} version {p.version} is already loaded")
        self.models[p.name][p.version] = p

    def set_default(self, name: str, version: str) -> None:
        """Route new requests for `name` to `version` (one dict assignment: atomic for the event loop)."""
        self.get(name, version)
        self.default[name] = version

    def __iter__(self):
        return (p for versions in list(self.models.values()) for p in list(versions.values()))

    def get(self, name: str, version: str | None = None) -> Predictor:
        if name not in self.models:
            raise ModelNotFound(f"no model named {name!r}; serving {sorted(self.models)}")
        versions = self.models[name]
        if version is None:
            return versions[self.default[name]]
        if version not in versions:
            raise ModelNotFound(f"model {name!r} has no version {version!r}; serving {sorted(versions)}")
        return versions[version]

    def first_of_task(self, task: str) -> Predictor | None:
        for name in sorted(self.models):
            p = self.get(name)
            if p.task == task:
                return p
        return None


class NoOp:
    """A model that does nothing (`run_serve --noop`): what is left of a request's latency is the server's own
    overhead (HTTP, JSON, validation, the batcher, metrics). Same interface as a dlm_core Predictor."""

    name, version, task, sha256 = "noop", "0", "noop", "0" * 64
    path = Path("<built-in>")
    manifest = {"created": "", "metrics": {"headline": "none", "values": {"none": 0.0}}}
    headline_metric = ("none", 0.0)

    def self_check(self) -> float:
        return 0.0

    def prepare(self, item):
        return item

    def prepare_all(self, items: list, where: str | None = "instances") -> list:
        return list(items)

    def run(self, rows: list):
        import numpy as np

        from dlm_core.predictors import BatchOutput

        n = len(rows)
        return BatchOutput([{"prediction": None} for _ in rows], {"output": np.zeros(n, np.float32)},
                           np.zeros((n, 0), np.float32), np.zeros(n, np.float32), None)

    def example_input(self):
        return 0

    def v2_inputs(self) -> list[dict]:
        return [{"name": "input", "datatype": "FP32", "shape": [-1]}]

    def v2_outputs(self) -> list[dict]:
        return [{"name": "output", "datatype": "FP32", "shape": [-1]}]

    def rows_from_v2(self, inputs: dict) -> list:
        if set(inputs) != {"input"} or inputs["input"].ndim != 1:
            from dlm_core.predictors import BadInput

            raise BadInput("the no-op model takes one 1-D input named 'input'")
        return list(inputs["input"])
