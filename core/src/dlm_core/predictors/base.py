"""What every predictor shares: ONNX Runtime sessions per graph role, the self-check against reference.npz,
batch outputs that can be split back per caller, and the KServe v2 view of the model.

The life of a request: `prepare(item)` validates one raw input and turns it into a row (BadInput if it is
wrong; cheap, so a server calls it before queueing); `run(rows)` executes one batch and post-processes it.
`predict(items)` is the two in one. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..bundle import Bundle
from ..errors import DlmError
from ..onnx_runtime import ort_session

# numpy dtype name -> KServe v2 datatype
V2_DATATYPES = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "int32": "INT32",
                "int8": "INT8", "uint8": "UINT8", "bool": "BOOL", "object": "BYTES"}


class BadInput(DlmError):
    """A request the model cannot take (wrong type, shape, empty text, undecodable image): a 4xx, not a 500."""


class InputTooLarge(BadInput):
    """An input over a size limit, found before it was decoded (an image's declared pixels): 413."""


@dataclasses.dataclass
class BatchOutput:
    """One executed batch: per-row results (the simple API), per-row tensors (v2), and what drift needs:
    input features (n, F), the prediction signal (n,) (class id, score or length) and embeddings (n, D)."""

    results: list[dict]
    tensors: dict[str, np.ndarray]
    features: np.ndarray
    signal: np.ndarray
    embeddings: np.ndarray | None

    def slice(self, start: int, stop: int) -> BatchOutput:
        return BatchOutput(self.results[start:stop], {k: v[start:stop] for k, v in self.tensors.items()},
                           self.features[start:stop], self.signal[start:stop],
                           None if self.embeddings is None else self.embeddings[start:stop])

    @staticmethod
    def concat(parts: list[BatchOutput]) -> BatchOutput:
        if len(parts) == 1:
            return parts[0]
        emb = None if parts[0].embeddings is None else np.concatenate([p.embeddings for p in parts])
        return BatchOutput([r for p in parts for r in p.results],
                           {k: np.concatenate([p.tensors[k] for p in parts]) for k in parts[0].tensors},
                           np.concatenate([p.features for p in parts]), np.concatenate([p.signal for p in parts]),
                           emb)


class Predictor:
    """Base class: a bundle, its ONNX Runtime sessions and the self-check. Subclasses set `task`,
    `feature_names`, `prediction_kind`, and implement prepare / run / rows_from_v2 / v2 signatures."""

    task: ClassVar[str]
    feature_names: ClassVar[list[str]]
    prediction_kind: ClassVar[str]  # what `signal` holds: "class", "score", "length" or "top_score"

    def __init__(self, bundle: Bundle, threads: int = 1):
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.pre = self.manifest["preprocess"]
        self.post = self.manifest["postprocess"]
        self.threads = threads
        self.sessions = {role: ort_session(bundle.graph_file(role), threads) for role in self.manifest["graphs"]}

    # -- identity
    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def path(self) -> Path:
        return self.bundle.path

    @property
    def sha256(self) -> str:
        return self.bundle.sha256

    @property
    def headline_metric(self) -> tuple[str, float]:
        m = self.manifest["metrics"]
        return m["headline"], m["values"][m["headline"]]

    # -- the graphs
    def run_graph(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self.sessions[role]
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))

    def self_check(self) -> float:
        """Replay reference.npz through every graph; the largest |ORT - torch| over all outputs. Raises
        DlmError above the manifest's tolerance (the bundle would serve numbers torch never produced)."""
        ref = self.bundle.npz(self.manifest["reference"]["file"])
        tol = self.manifest["reference"]["tolerance"]
        worst, where = 0.0, ""
        for role, g in self.manifest["graphs"].items():
            feeds = {}
            for spec in g["inputs"]:
                key = f"{role}.in.{spec['name']}"
                if key not in ref:
                    raise DlmError(f"bundle {self.path}: reference.npz has no {key!r}; re-export the bundle")
                feeds[spec["name"]] = ref[key]
            got = self.run_graph(role, feeds)
            for spec in g["outputs"]:
                key = f"{role}.out.{spec['name']}"
                if key not in ref:
                    raise DlmError(f"bundle {self.path}: reference.npz has no {key!r}; re-export the bundle")
                want, have = ref[key], got[spec["name"]]
                if want.shape != have.shape:
                    raise DlmError(f"bundle {self.path}: graph {role!r} output {spec['name']!r} has shape "
                                   f"{have.shape}, the reference {want.shape}")
                diff = float(np.max(np.abs(want.astype(np.float64) - have.astype(np.float64)))) if want.size else 0.0
                if not diff <= worst:
                    worst, where = diff, f"{role}.{spec['name']}"
        if not worst <= tol:
            raise DlmError(f"bundle {self.path} failed its self-check: ONNX Runtime differs from the exported "
                           f"torch outputs by {worst:.2e} > tolerance {tol:.0e} (at {where})")
        return worst

    # -- the request path (subclasses)
    def prepare(self, item: Any):
        raise NotImplementedError

    def run(self, rows: list) -> BatchOutput:
        raise NotImplementedError

    def prepare_all(self, items: list, where: str | None = "instances") -> list:
        """prepare() each item; a BadInput names the item that failed (`instances[3]: ...`; where=None: no
        prefix, for a request that held one item)."""
        rows = []
        for i, item in enumerate(items):
            try:
                rows.append(self.prepare(item))
            except BadInput as err:
                raise type(err)(f"{where}[{i}]: {err}" if where else str(err)) from None
        return rows

    def predict(self, items: list) -> list[dict]:
        return self.run([self.prepare(x) for x in items]).results

    # -- KServe v2 view: [{name, datatype, shape}] and tensors -> rows
    def v2_inputs(self) -> list[dict]:
        raise NotImplementedError

    def v2_outputs(self) -> list[dict]:
        raise NotImplementedError

    def rows_from_v2(self, inputs: dict[str, np.ndarray]) -> list:
        raise NotImplementedError

    def example_input(self) -> Any:
        """A valid raw input for docs and smoke tests."""
        raise NotImplementedError


def v2_spec(name: str, dtype: str, shape: list[int]) -> dict:
    return {"name": name, "datatype": V2_DATATYPES[dtype], "shape": list(shape)}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def softmax_topk(logits: np.ndarray, labels: list[str], k: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Probabilities, the top-k class ids per row, and each row's {prediction, confidence, top_k} answer."""
    probs = softmax(logits.astype(np.float64))
    top = np.argsort(-probs, 1, kind="stable")[:, :min(k, probs.shape[1])]
    results = [{"prediction": labels[t[0]], "confidence": float(p[t[0]]),
                "top_k": [{"label": labels[j], "probability": float(p[j])} for j in t]} for p, t in zip(probs, top)]
    return probs, top, results


def expect_single_input(inputs: dict[str, np.ndarray], name: str) -> np.ndarray:
    if set(inputs) != {name}:
        raise BadInput(f"this model takes one input named {name!r}, got {sorted(inputs)}")
    return inputs[name]
