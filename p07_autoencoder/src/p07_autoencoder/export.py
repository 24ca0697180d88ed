"""Export a trained image detector as a dlm-bundle/1 (core/README.md): ONNX returning one error and the bottleneck
code per input, the validation-chosen threshold, parity with torch."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlm_core.bundle import provenance
from dlm_core.bundle_write import save_bundle
from dlm_core.data import load_dataset
from dlm_core.errors import DlmError
from dlm_core.export import image_preprocess, onnx_export, ort_outputs, plot_parity, torch_reference
from dlm_core.io import read_json

from .data import load
from .evaluate import BASELINES, load_run
from .model import Scorer

BUNDLE_NAME = "fashion-anomaly"


class ServingGraph(nn.Module):
    """image (N, 1, 28, 28) = pixels / 255 -> (per-image score (N,), bottleneck code (N, bottleneck)); the score is
    the run's (Scorer: blurred error, plus the code's distance when the run has code_score)."""

    def __init__(self, ae: nn.Module, blur_sigma: float, code: dict | None = None):
        super().__init__()
        self.error, self.ae = Scorer(ae, blur_sigma, code), ae

    def forward(self, image):
        return self.error(image), self.ae.encoder(image)


def export_bundle(run_path, version: str | None = None, overwrite: bool = False, n_reference: int = 32,
                  name: str = BUNDLE_NAME):
    """The image detector as a dlm-bundle/1: one graph (error + code), the validation-chosen threshold in
    postprocess, the drift reference from the validation split's normal images plus 1% of its other-class
    images (the live mix the threshold was set for)."""
    cfg, spec, ae = load_run(run_path)
    if spec["kind"] != "image":
        raise DlmError(f"{run_path} is a {spec['kind']} run; only image detectors (fashion-oneclass) are exported")
    results = read_json(Path(run_path) / "results.json")
    net = ServingGraph(ae, spec.get("error_blur", 0.0), spec.get("code_score")).eval()
    prep = load(cfg)
    # reference inputs: normal validation images and the first test images (mostly anomalies)
    ref = np.concatenate([prep.x_val[: n_reference // 2], prep.x_test[: n_reference - n_reference // 2]])
    val = load_dataset("fashion-mnist", seed=cfg.seed).val
    normal, other = val.x[val.y == cfg.normal_class], val.x[val.y != cfg.normal_class]
    drift_inputs = list(normal) + list(other[np.random.default_rng(cfg.seed).permutation(len(other))[
        :max(1, len(normal) // 100)]])
    version = version or Path(run_path).resolve().name
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_export(net, (torch.from_numpy(ref[:2]),), tmp / "model.onnx", ["image"], ["error", "code"],
                    ({0: torch.export.Dim("batch")},))
        reference = torch_reference(net, "model", {"image": ref}, ["error", "code"])
        max_abs = plot_parity(reference["model.out.error"], ort_outputs(tmp / "model.onnx", {"image": ref})["error"],
                              tmp / "parity.png", "error")
        torch.save(ae.state_dict(), tmp / "weights.pt")
        ae_test = results["autoencoder"]
        values = {**{k: v for k, v in ae_test.items() if isinstance(v, (int, float))},
                  **{f"{k}_roc_auc": results[k]["roc_auc"] for k in BASELINES if k in results},
                  "onnx_parity_max_abs": max_abs}
        bundle = save_bundle(
            name, version, task="anomaly-detection", graphs={"model": tmp / "model.onnx"},
            preprocess=image_preprocess("image", 0.0, 1.0),
            postprocess={"type": "threshold", "graph": "model", "output": "error",
                         "threshold": float(spec["threshold"]),
                         "higher_is_anomalous": True, "labels": ["normal", "anomaly"], "embedding_output": "code",
                         "normal_class": spec["normal_class_name"], "fpr_target": spec["fpr_target"]},
            reference=reference, reference_tolerance=1e-4,
            metrics={"split": "test", "headline": "roc_auc", "values": values},
            provenance=provenance("p07_autoencoder", run_path, "fashion-mnist", cfg.seed, cfg.seed, vars(cfg)),
            drift_inputs=drift_inputs,
            files={"weights.pt": tmp / "weights.pt", "parity.png": tmp / "parity.png"}, overwrite=overwrite)
    return bundle, max_abs
