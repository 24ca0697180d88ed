"""Export a trained image detector as a dlm_core bundle: ONNX that returns one error per input, plus parity."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from dlm_core.errors import DlmError

BUNDLE_NAME = "p07_autoencoder"


def load_trained(run_path) -> tuple[object, dict, object]:
    """(config, preprocess spec, autoencoder in eval mode) from a finished run directory."""
    from dlm_core.checkpoint import Checkpointer
    from dlm_core.io import read_json
    from dlm_core.runs import RunDir

    from .config import AEConfig
    from .model import build_model

    run = RunDir.open(run_path)
    cfg = AEConfig(**run.load_config())
    if not run.file("preprocess.json").is_file():
        raise DlmError(f"{run.path} has no preprocess.json: the run did not finish; train it again or --resume it")
    spec = read_json(run.file("preprocess.json"))
    model = build_model(spec["kind"], spec["input_shape"], cfg.bottleneck, cfg.width)
    model.load_state_dict(Checkpointer(run.checkpoint_dir).best()["model"])
    model.eval()
    return cfg, spec, model


def export_bundle(run_path, version: str | None = None, overwrite: bool = False, n_reference: int = 32):
    import onnxruntime as ort
    import torch

    from dlm_core.bundle import save_bundle
    from dlm_core.io import read_json
    from dlm_core.plotting import plt, save_figure

    from .data import load
    from .evaluate import BASELINES
    from .model import ErrorModel

    cfg, spec, ae = load_trained(run_path)
    if spec["kind"] != "image":
        raise DlmError(f"{run_path} is a {spec['kind']} run; only image detectors (fashion-oneclass) are exported")
    results = read_json(Path(run_path) / "results.json")
    net = ErrorModel(ae, spec.get("error_blur", 0.0)).eval()
    prep = load(cfg)
    # reference inputs: normal validation images and the first test images (mostly anomalies)
    ref = np.concatenate([prep.x_val[: n_reference // 2], prep.x_test[: n_reference - n_reference // 2]])
    with torch.no_grad():
        torch_out = net(torch.from_numpy(ref)).numpy()
    version = version or f"fashion-class{cfg.normal_class}"
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        torch.onnx.export(net, (torch.from_numpy(ref[:2]),), str(onnx_path), dynamo=True, external_data=False,
                          verbose=False, input_names=["image"], output_names=["error"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
        so = ort.SessionOptions()
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        onnx_out = sess.run(None, {sess.get_inputs()[0].name: ref})[0]
        max_abs = float(np.max(np.abs(onnx_out - torch_out)))
        max_rel = float(np.max(np.abs(onnx_out - torch_out) / np.maximum(np.abs(torch_out), 1e-12)))
        pyplot = plt()
        fig, ax = pyplot.subplots(figsize=(4.2, 4))
        ax.scatter(torch_out, onnx_out, s=10)
        lim = [float(min(torch_out.min(), onnx_out.min())), float(max(torch_out.max(), onnx_out.max()))]
        ax.plot(lim, lim, color="grey", lw=0.8, ls=":")
        ax.axvline(spec["threshold"], color="k", ls="--", lw=0.8, label="threshold")
        ax.set(xlabel="torch error", ylabel="ONNX Runtime error", title=f"parity: max |diff| {max_abs:.2e}")
        ax.legend()
        parity_png = Path(tmp) / "parity.png"
        save_figure(fig, parity_png)
        torch.save(ae.state_dict(), Path(tmp) / "weights.pt")
        np.save(Path(tmp) / "reference_inputs.npy", ref)
        np.save(Path(tmp) / "reference_outputs.npy", torch_out)
        preprocess = {**spec, "onnx_input": "float32 (N, 1, 28, 28) = raw pixels * scale",
                      "onnx_output": "float32 (N,) mean squared reconstruction error (residual blurred "
                                       "with std error_blur px first); anomaly = error > threshold"}
        metrics = {"threshold": spec["threshold"], "fpr_target": spec["fpr_target"],
                   "test": results["autoencoder"], "onnx_parity_max_abs": max_abs, "onnx_parity_max_rel": max_rel,
                   **{k: results[k] for k in BASELINES if k in results}}
        bundle = save_bundle(BUNDLE_NAME, version, {
            "model.onnx": onnx_path, "weights.pt": Path(tmp) / "weights.pt", "parity.png": parity_png,
            "reference_inputs.npy": Path(tmp) / "reference_inputs.npy",
            "reference_outputs.npy": Path(tmp) / "reference_outputs.npy"},
            preprocess=preprocess, labels=["normal", "anomaly"], metrics=metrics, overwrite=overwrite,
            extra={"task": "anomaly-detection", "normal_class": spec["normal_class_name"],
                   "source_run": str(run_path)})
    return bundle, max_abs
