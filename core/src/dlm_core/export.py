"""The torch side of a bundle export, shared by the exporting projects (p03, p05, p06, p07): ONNX export with
a dynamic batch, torch's outputs on fixed inputs for reference.npz, the ONNX-Runtime-vs-torch parity figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .onnx_runtime import ort_session


def onnx_export(module, example: tuple, path, input_names: list[str], output_names: list[str],
                dynamic_shapes: tuple) -> Path:
    """torch.onnx.export with the dynamo exporter into one self-contained file, quietly."""
    import torch

    torch.onnx.export(module.eval(), example, str(path), dynamo=True, input_names=input_names,
                      output_names=output_names, dynamic_shapes=dynamic_shapes, external_data=False, verbose=False)
    return Path(path)


def torch_reference(module, role: str, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
    """reference.npz entries for one graph: "<role>.in.<name>" inputs and "<role>.out.<name>" torch outputs."""
    import torch

    with torch.no_grad():
        outs = module.eval()(*[torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()])
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    ref = {f"{role}.in.{k}": np.ascontiguousarray(v) for k, v in feeds.items()}
    ref.update({f"{role}.out.{n}": o.detach().cpu().numpy() for n, o in zip(output_names, outs)})
    return ref


def ort_outputs(onnx_path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort_session(onnx_path, threads=0)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def plot_parity(torch_out: np.ndarray, ort_out: np.ndarray, path, what: str = "output") -> float:
    """Scatter of ORT against torch and the histogram of |diff|; returns the max |diff|."""
    from .plotting import plt, save_figure

    pyplot = plt()
    diff = np.abs(torch_out.astype(np.float64) - ort_out.astype(np.float64)).ravel()
    fig, (a, b) = pyplot.subplots(1, 2, figsize=(8, 3.4))
    step = max(1, torch_out.size // 20000)
    a.scatter(torch_out.ravel()[::step], ort_out.ravel()[::step], s=3)
    a.set_xlabel(f"torch {what}")
    a.set_ylabel(f"ONNX Runtime {what}")
    a.set_title(f"{what}: torch vs ORT")
    b.hist(diff, bins=40)
    b.set_xlabel("|torch - ORT|")
    b.set_title(f"max abs diff {diff.max():.2e}")
    save_figure(fig, path)
    return float(diff.max())


def image_preprocess(graph_input: str, mean: float, std: float, height: int = 28, width: int = 28) -> dict:
    """The one image schema of dlm-bundle/1 (p03 and p07): grey, bilinear resize, x * scale, then (x - mean) / std."""
    return {"type": "image", "graph_input": graph_input, "height": height, "width": width, "channels": 1,
            "scale": 1 / 255, "mean": [float(mean)], "std": [float(std)], "layout": "NCHW", "background": "black"}


def text_preprocess(graph_input: str, max_tokens: int, truncate: bool, pad_id: int = 0, min_length: int = 1) -> dict:
    """The text schema: the bundle's tokenizer.json, ids cut at max_tokens (truncate) or refused beyond it,
    right-padded with pad_id to the longest row of a batch (at least min_length)."""
    return {"type": "text", "graph_input": graph_input, "tokenizer": "tokenizer.json", "max_tokens": int(max_tokens),
            "pad_id": int(pad_id), "add_special_tokens": False, "truncate": bool(truncate),
            "min_length": int(min_length)}


def scalar_metrics(values: dict) -> dict:
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
