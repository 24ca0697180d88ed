"""Export a run's best model as a dlm-bundle/1 (core/README.md): one ONNX graph image -> (logits, the
penultimate-layer embedding), reference.npz, drift_reference.npz from 1,000 validation images, the test
metrics, weights.pt (for torch-vs-ORT benches) and an ONNX-vs-torch parity figure."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from dlm_core.bundle import load_bundle, provenance
from dlm_core.bundle_write import save_bundle
from dlm_core.data import FASHION_CLASSES
from dlm_core.errors import DlmError
from dlm_core.export import image_preprocess, onnx_export, ort_outputs, plot_parity, torch_reference
from dlm_core.io import read_json

from .data import MEAN, STD, load_data, normalize
from .evaluate import load_run
from .model import with_tta

PARITY_TOL = 1e-4


class ServingGraph(nn.Module):
    """image (N, 1, 28, 28) normalised -> logits (N, classes), embedding (N, features). With tta (the default
    run's setting, so the default here) the graph itself averages each image with its mirror image: embedding
    = mean of the two views' embeddings, logits = mean of their logits, as validation and test scored it."""

    def __init__(self, model: nn.Module, tta: bool = True):
        super().__init__()
        self.model = with_tta(model, tta)

    def forward(self, image: torch.Tensor):
        emb = self.model.embed(image)
        return self.model.head[-1](emb), emb


def export_run(run_path, name: str = "fashion-cnn", version: str | None = None, overwrite: bool = False,
               n_reference: int = 32, n_drift: int = 1000, drift_inputs=None, root=None) -> dict:
    """drift_inputs: raw images for drift_reference.npz (default: the first `n_drift` validation images; a
    retrained model passes the traffic it was adapted to). root: the artifacts folder (default: $DLM_ARTIFACTS)."""
    model, cfg, state = load_run(run_path, "cpu")
    model = model.to(memory_format=torch.contiguous_format)
    run_path = Path(run_path)
    version = version or run_path.name
    classes = state.get("classes") or (FASHION_CLASSES if cfg.dataset == "fashion-mnist" else
                                       [str(i) for i in range(10)])
    results = run_path / "results.json"
    if not results.exists() or "test_acc" not in read_json(results):
        raise DlmError(f"{run_path} has no test accuracy in results.json: the run did not finish; "
                       f"--resume it or run run_cnn_evaluate {run_path}")
    res = read_json(results)
    ds = load_data(cfg.dataset, cfg.seed)
    graph = ServingGraph(model, cfg.tta_flip).eval()
    ref_in = normalize(ds.val.x[:n_reference])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_export(graph, (torch.from_numpy(ref_in[:2]),), tmp / "model.onnx", ["image"], ["logits", "embedding"],
                    ({0: torch.export.Dim("batch")},))
        reference = torch_reference(graph, "model", {"image": ref_in}, ["logits", "embedding"])
        ort = ort_outputs(tmp / "model.onnx", {"image": ref_in})
        max_diff = plot_parity(reference["model.out.logits"], ort["logits"], tmp / "parity.png", "logit")
        if not max_diff <= PARITY_TOL:
            raise DlmError(f"ONNX Runtime logits differ from torch by {max_diff:.2e} > {PARITY_TOL}; not saved")
        torch.save(model.state_dict(), tmp / "weights.pt")
        values = {"accuracy": res["test_acc"], "loss": res.get("test_loss"), "val_accuracy": res.get("best_val_acc"),
                  "baseline_logreg_accuracy": res.get("baseline_logreg_test_acc"),
                  "test_images": int(len(ds.test.y))}
        bundle = save_bundle(
            name, version, task="image-classification", graphs={"model": tmp / "model.onnx"},
            preprocess=image_preprocess("image", MEAN, STD),
            postprocess={"type": "softmax_topk", "graph": "model", "output": "logits", "labels": list(classes),
                         "top_k": 3, "embedding_output": "embedding"},
            reference=reference, reference_tolerance=PARITY_TOL,
            metrics={"split": "test", "headline": "accuracy",
                     "values": {k: v for k, v in values.items() if v is not None}},
            provenance=provenance("p03_cnn", run_path, cfg.dataset, cfg.seed, cfg.seed, vars(cfg)),
            drift_inputs=list(ds.val.x[:n_drift]) if drift_inputs is None else list(drift_inputs),
            files={"weights.pt": tmp / "weights.pt", "parity.png": tmp / "parity.png"}, overwrite=overwrite,
            root=root)
    load_bundle(bundle.path)
    return {"bundle": str(bundle.path), "parity_max_abs_diff": max_diff, "test_acc": res["test_acc"]}
