"""Export a run's best model as a dlm_core bundle: model.onnx (dynamic batch), weights, preprocess.json,
labels.json, metrics.json, reference inputs/outputs and an ONNX-vs-torch parity figure."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from dlm_core.errors import DlmError

PARITY_TOL = 1e-4


def export_onnx(model, path: Path) -> None:
    import torch

    model = model.eval().to(memory_format=torch.contiguous_format)
    example = (torch.zeros(2, 1, 28, 28),)
    torch.onnx.export(model, example, str(path), dynamo=True, input_names=["image"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False)


def ort_session(path, threads: int = 0, spinning: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def plot_parity(torch_out: np.ndarray, ort_out: np.ndarray, path) -> None:
    from dlm_core.plotting import plt, save_figure

    pyplot = plt()
    fig, (a, b) = pyplot.subplots(1, 2, figsize=(8, 3.4))
    a.scatter(torch_out.ravel(), ort_out.ravel(), s=4)
    a.set_xlabel("torch logit")
    a.set_ylabel("ONNX Runtime logit")
    a.set_title("logits: torch vs ORT")
    diff = np.abs(torch_out - ort_out).ravel()
    b.hist(diff, bins=40)
    b.set_xlabel("|torch - ORT|")
    b.set_title(f"max abs diff {diff.max():.2e}")
    save_figure(fig, path)


def export_run(run_path, name: str = "fashion-cnn", version: str | None = None, overwrite: bool = False,
               n_reference: int = 32) -> dict:
    import torch

    from dlm_core.bundle import load_bundle, save_bundle
    from dlm_core.data import FASHION_CLASSES
    from dlm_core.io import read_json

    from .data import load_data, normalize, preprocess_spec
    from .evaluate import load_run_model

    model, cfg, state = load_run_model(run_path, "cpu")
    run_path = Path(run_path)
    version = version or run_path.name
    classes = state.get("classes") or (FASHION_CLASSES if cfg.dataset == "fashion-mnist" else
                                       [str(i) for i in range(10)])
    ds = load_data(cfg.dataset, cfg.seed, 0, n_reference)
    ref_in = normalize(ds.test.x[:n_reference])
    with torch.no_grad():
        ref_out = model(torch.from_numpy(ref_in)).numpy()
    results = run_path / "results.json"
    metrics = {k: v for k, v in (read_json(results) if results.exists() else {}).items()
               if isinstance(v, (int, float, str, bool))}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(model, tmp / "model.onnx")
        sess = ort_session(tmp / "model.onnx")
        ort_out = sess.run(None, {"image": ref_in})[0]
        ort_one = sess.run(None, {"image": ref_in[:1]})[0]
        max_diff = float(max(np.abs(ort_out - ref_out).max(), np.abs(ort_one - ref_out[:1]).max()))
        if not max_diff <= PARITY_TOL:
            raise DlmError(f"ONNX Runtime logits differ from torch by {max_diff:.2e} > {PARITY_TOL}; "
                           "the export is wrong, not saved")
        plot_parity(ref_out, ort_out, tmp / "parity.png")
        np.save(tmp / "reference_inputs.npy", ref_in)
        np.save(tmp / "reference_outputs.npy", ref_out.astype(np.float32))
        torch.save(model.state_dict(), tmp / "weights.pt")
        metrics.update({"parity_max_abs_diff": max_diff, "parity_tolerance": PARITY_TOL,
                        "reference_count": int(len(ref_in)), "source_run": str(run_path)})
        bundle = save_bundle(
            name, version,
            {f: tmp / f for f in ("model.onnx", "weights.pt", "reference_inputs.npy", "reference_outputs.npy",
                                  "parity.png")},
            preprocess=preprocess_spec(), labels=list(classes), metrics=metrics, overwrite=overwrite,
            extra={"project": "p03_cnn", "task": "image-classification", "input": "image", "output": "logits",
                   "config": {k: v for k, v in vars(cfg).items()}})
    load_bundle(bundle.path)  # checksums verify
    return {"bundle": str(bundle.path), "parity_max_abs_diff": max_diff, "test_acc": metrics.get("test_acc")}
