"""ONNX export for serving: the encoder (source ids -> cross-attention keys/values) and ONE decoder step with
the key/value cache as inputs and outputs (dynamic batch and lengths), an ONNX Runtime greedy decoder that
must give exactly torch's tokens, and a dlm_core bundle with the tokenizer."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlm_core.errors import DlmError

from .model import BOS, EOS, PAD, Transformer

BUNDLE_NAME = "p05_transformer"


class EncoderGraph(nn.Module):
    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, src):
        cross_k, cross_v = self.model.cross_kv(self.model.encode(src))
        return cross_k, cross_v, self.model.source_keep(src)


class StepGraph(nn.Module):
    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, token, self_k, self_v, cross_k, cross_v, src_keep):
        return self.model.step(token, self_k, self_v, cross_k, cross_v, src_keep)


def export_onnx(model: Transformer, folder: Path) -> tuple[Path, Path]:
    """encoder.onnx and decoder_step.onnx (legacy TorchScript exporter with dynamic axes: the step's cache
    starts empty, a zero-length axis that torch.export's dynamic shapes refuse to specialise around)."""
    model.eval()
    src = torch.tensor([[5, 6, 7, 8], [9, 10, PAD, PAD]])
    enc, step = folder / "encoder.onnx", folder / "decoder_step.onnx"
    torch.onnx.export(EncoderGraph(model), (src,), str(enc), dynamo=False, verbose=False,
                      input_names=["src"], output_names=["cross_k", "cross_v", "src_keep"],
                      dynamic_axes={"src": {0: "batch", 1: "src_len"}, "cross_k": {1: "batch", 3: "src_len"},
                                    "cross_v": {1: "batch", 3: "src_len"}, "src_keep": {0: "batch", 3: "src_len"}})
    with torch.no_grad():
        ck, cv, keep = EncoderGraph(model)(src)
        k, v = model.empty_cache(2)
        token = torch.tensor([[BOS], [BOS]])
        for _ in range(2):  # a non-empty cache as the example
            _, k, v = model.step(token, k, v, ck, cv, keep)
    cache_axes = {1: "batch", 3: "past"}
    torch.onnx.export(StepGraph(model), (token, k, v, ck, cv, keep), str(step), dynamo=False, verbose=False,
                      input_names=["token", "self_k", "self_v", "cross_k", "cross_v", "src_keep"],
                      output_names=["logp", "new_k", "new_v"],
                      dynamic_axes={"token": {0: "batch"}, "self_k": cache_axes, "self_v": cache_axes,
                                    "cross_k": {1: "batch", 3: "src_len"}, "cross_v": {1: "batch", 3: "src_len"},
                                    "src_keep": {0: "batch", 3: "src_len"}, "logp": {0: "batch"},
                                    "new_k": {1: "batch", 3: "now"}, "new_v": {1: "batch", 3: "now"}})
    return enc, step


def _session(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OrtTranslator:
    """Greedy decoding with ONNX Runtime over encoder.onnx + decoder_step.onnx (the same loop as torch's)."""

    def __init__(self, folder: str | Path, max_len: int, layers: int, heads: int, d_k: int):
        folder = Path(folder)
        self.enc, self.step = _session(folder / "encoder.onnx"), _session(folder / "decoder_step.onnx")
        self.max_len, self.layers, self.heads, self.d_k = max_len, layers, heads, d_k

    @classmethod
    def from_bundle(cls, path: str | Path) -> OrtTranslator:
        from dlm_core.bundle import load_bundle

        b = load_bundle(path)
        pre = b.json("preprocess.json")
        return cls(b.path, pre["max_len"], pre["dec_layers"], pre["heads"], pre["d_k"])

    def greedy(self, src: np.ndarray) -> list[list[int]]:
        ck, cv, keep = self.enc.run(None, {"src": src.astype(np.int64)})
        n = src.shape[0]
        k = np.zeros((self.layers, n, self.heads, 0, self.d_k), np.float32)
        v = np.zeros_like(k)
        prefix = np.full((n, 1), BOS, np.int64)
        done = np.zeros(n, bool)
        for _ in range(self.max_len):
            logp, k, v = self.step.run(None, {"token": prefix[:, -1:], "self_k": k, "self_v": v, "cross_k": ck,
                                              "cross_v": cv, "src_keep": keep})
            nxt = np.where(done, PAD, logp.argmax(-1))
            prefix = np.concatenate([prefix, nxt[:, None]], axis=1)
            done |= nxt == EOS
            if done.all():
                break
        out = []
        for row in prefix[:, 1:].tolist():
            ids = []
            for t in row:
                if t in (EOS, PAD):
                    break
                ids.append(t)
            out.append(ids)
        return out


def parity_figure(torch_logp: np.ndarray, ort_logp: np.ndarray, path: Path) -> None:
    from dlm_core.plotting import plt, save_figure

    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(4.2, 4))
    ax.scatter(torch_logp.ravel()[::7], ort_logp.ravel()[::7], s=2)
    ax.set_xlabel("torch log-prob")
    ax.set_ylabel("ONNX Runtime log-prob")
    ax.set_title(f"first decoder step, max |diff| {np.abs(torch_logp - ort_logp).max():.1e}")
    save_figure(fig, path)


def export_bundle(run_path: str | Path, sample_pairs, version: str | None = None) -> Path:
    """Export a trained run to artifacts/p05_transformer/<version>/ and check ORT tokens == torch tokens."""
    from dlm_core.bundle import save_bundle

    from . import data as D
    from .decode import greedy
    from .evaluate import load_trained

    model, tok, cfg, run = load_trained(run_path)
    a = model.decoder[0].self_attn
    srcs = [D.encode(tok, en)[:cfg.max_len] for en, _ in sample_pairs]
    src = D.pad(srcs)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(model, tmp)
        ort_tr = OrtTranslator(tmp, cfg.max_len + 1, len(model.decoder), a.heads, a.d_k)
        ort_tokens = ort_tr.greedy(src)
        torch_tokens = greedy(model, torch.from_numpy(src), cfg.max_len + 1)
        if ort_tokens != torch_tokens:
            raise DlmError("ONNX Runtime greedy tokens differ from torch's; the export is not faithful")
        # first-step log-probs for the parity figure and the reference outputs
        ck, cv, keep = ort_tr.enc.run(None, {"src": src})
        k = np.zeros((len(model.decoder), len(src), a.heads, 0, a.d_k), np.float32)
        first = np.full((len(src), 1), BOS, np.int64)
        ort_logp = ort_tr.step.run(None, {"token": first, "self_k": k, "self_v": k, "cross_k": ck, "cross_v": cv,
                                          "src_keep": keep})[0]
        with torch.no_grad():
            t_ck, t_cv = model.cross_kv(model.encode(torch.from_numpy(src)))
            tk, tv = model.empty_cache(len(src))
            torch_logp = model.step(torch.from_numpy(first), tk, tv, t_ck, t_cv,
                                    model.source_keep(torch.from_numpy(src)))[0].numpy()
        parity_figure(torch_logp, ort_logp, tmp / "parity.png")
        width = max(len(t) for t in torch_tokens) or 1
        np.save(tmp / "reference_input.npy", src)
        np.save(tmp / "reference_output.npy", D.pad([t + [EOS] for t in torch_tokens])[:, :width + 1])
        torch.save(model.state_dict(), tmp / "model.pt")
        results = run.path / "results.json"
        import json

        metrics = {k: v for k, v in json.loads(results.read_text()).items() if k.startswith("test_")} \
            if results.is_file() else {}
        metrics["onnx_max_abs_diff_first_step"] = float(np.abs(torch_logp - ort_logp).max())
        metrics["onnx_tokens_equal_torch"] = True
        version = version or run.path.name
        bundle = save_bundle(
            BUNDLE_NAME, version,
            {"encoder.onnx": tmp / "encoder.onnx", "decoder_step.onnx": tmp / "decoder_step.onnx",
             "tokenizer.json": run.file("tokenizer.json"), "model.pt": tmp / "model.pt",
             "reference_input.npy": tmp / "reference_input.npy", "reference_output.npy": tmp / "reference_output.npy",
             "parity.png": tmp / "parity.png"},
            preprocess={"tokenizer": "tokenizer.json", "pad": PAD, "bos": BOS, "eos": EOS, "max_len": cfg.max_len + 1,
                        "max_source_tokens": cfg.max_len, "dec_layers": len(model.decoder), "heads": a.heads,
                        "d_k": a.d_k, "decoding": "greedy: encoder.onnx once, then decoder_step.onnx per token "
                                                  "with self_k/self_v starting empty (past axis 0)"},
            labels={"source_lang": "en", "target_lang": "es"}, metrics=metrics,
            extra={"run": str(run.path)}, overwrite=True)
    return bundle.path
