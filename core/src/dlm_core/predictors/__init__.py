"""Torch-free predictors over dlm-bundle/1 bundles: `load_predictor(path)` -> an object with
`predict(items) -> list[dict]`, `prepare(item)` + `run(rows)` (what a batching server uses), `self_check()`
and the KServe v2 view (`v2_inputs`, `v2_outputs`, `rows_from_v2`). One class per task, built on numpy,
onnxruntime, tokenizers, faiss and Pillow (the `serve` extra of dlm-core); importing it never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..bundle import MANIFEST, Bundle, load_bundle
from ..errors import DlmError
from ..io import read_json
from ..onnx_runtime import ort_session
from .base import BadInput, BatchOutput, InputTooLarge, Predictor
from .image import AnomalyDetector, ImageClassifier, decode_image
from .text import NgramTextClassifier, TextClassifier, TextRetriever
from .translation import Translator

PREDICTORS: dict[str, type[Predictor]] = {cls.task: cls for cls in (ImageClassifier, AnomalyDetector,
                                                                     TextClassifier, TextRetriever, Translator)}
# (task, preprocess type) -> a predictor other than the task's default
VARIANTS: dict[tuple[str, str], type[Predictor]] = {("text-classification", "ngrams"): NgramTextClassifier}

__all__ = ["PREDICTORS", "VARIANTS", "AnomalyDetector", "BadInput", "BatchOutput", "ImageClassifier",
           "InputTooLarge", "NgramTextClassifier", "Predictor", "TextClassifier", "TextRetriever", "Translator",
           "decode_image", "drift_reference", "load_predictor", "ort_session"]


def load_predictor(path: str | os.PathLike, threads: int = 1, verify: bool = True) -> Predictor:
    """The predictor for the bundle at `path`, after its schema and checksums verify (verify=False only while
    an exporter is still writing the bundle). Call `self_check()` before serving it."""
    if verify:
        bundle = load_bundle(path)
    else:
        bundle = Bundle(Path(path), read_json(Path(path) / MANIFEST))
    task = bundle.manifest.get("task")
    if task not in PREDICTORS:
        raise DlmError(f"bundle {path}: no predictor for task {task!r}; known: {sorted(PREDICTORS)}")
    variant = VARIANTS.get((task, bundle.manifest.get("preprocess", {}).get("type")))
    return (variant or PREDICTORS[task])(bundle, threads)


def drift_reference(predictor: Predictor, inputs, batch_size: int = 64) -> tuple[dict[str, np.ndarray], dict]:
    """Run validation-split raw inputs through the predictor: the arrays of drift_reference.npz (features,
    predictions, embeddings) and the manifest's drift section. Same code path as live traffic."""
    parts = []
    inputs = list(inputs)
    for i in range(0, len(inputs), batch_size):
        parts.append(predictor.run([predictor.prepare(x) for x in inputs[i:i + batch_size]]))
    out = BatchOutput.concat(parts)
    arrays = {"features": out.features.astype(np.float32), "predictions": out.signal.astype(np.float32)}
    if out.embeddings is not None:
        arrays["embeddings"] = out.embeddings.astype(np.float32)
    section = {"rows": len(inputs), "features": list(predictor.feature_names),
               "prediction": predictor.prediction_kind,
               "embedding": None if out.embeddings is None else f"{out.embeddings.shape[1]}-d"}
    return arrays, section
