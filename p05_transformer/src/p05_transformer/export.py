"""ONNX export for serving: the encoder (source ids -> cross-attention keys/values) and ONE decoder step with
the key/value cache as inputs and outputs (dynamic batch and lengths), bundled as a dlm-bundle/1 with the
tokenizer. Decoding over these graphs lives in dlm_core.predictors.Translator (torch-free); it must give
exactly torch's tokens."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlm_core.bundle import provenance
from dlm_core.bundle_write import save_bundle
from dlm_core.errors import DlmError
from dlm_core.export import text_preprocess

from . import data as D
from .decode import translate_ids
from .model import BOS, EOS, PAD, Transformer
from .trained import load_run

BUNDLE_NAME = "translator-en-es"


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
    torch.onnx.export(EncoderGraph(model).eval(), (src,), str(enc), dynamo=False, verbose=False,
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
    torch.onnx.export(StepGraph(model).eval(), (token, k, v, ck, cv, keep), str(step), dynamo=False, verbose=False,
                      input_names=["token", "self_k", "self_v", "cross_k", "cross_v", "src_keep"],
                      output_names=["logp", "new_k", "new_v"],
                      dynamic_axes={"token": {0: "batch"}, "self_k": cache_axes, "self_v": cache_axes,
                                    "cross_k": {1: "batch", 3: "src_len"}, "cross_v": {1: "batch", 3: "src_len"},
                                    "src_keep": {0: "batch", 3: "src_len"}, "logp": {0: "batch"},
                                    "new_k": {1: "batch", 3: "now"}, "new_v": {1: "batch", 3: "now"}})
    return enc, step


def translator_postprocess(model: Transformer, cfg) -> dict:
    a = model.decoder[0].self_attn
    return {"type": "seq2seq_decode", "encoder_graph": "encoder", "step_graph": "decoder_step", "bos_id": BOS,
            "eos_id": EOS, "pad_id": PAD, "max_output_tokens": cfg.max_len + 1, "beam": cfg.beam,
            "length_alpha": cfg.length_alpha, "no_repeat_ngram": cfg.no_repeat_ngram,
            "cache": {"layers": len(model.decoder), "heads": a.heads, "d_k": a.d_k,
                      "layout": "(layers, batch, heads, past, d_k), past starts at 0"},
            "source_lang": "en", "target_lang": "es"}


def reference_arrays(model: Transformer, src: np.ndarray) -> dict[str, np.ndarray]:
    """reference.npz: the encoder on `src`, and one decoder step on a non-empty (one-token) cache."""
    with torch.no_grad():
        ck, cv, keep = EncoderGraph(model)(torch.from_numpy(src))
        k0, v0 = model.empty_cache(len(src))
        logp0, k1, v1 = model.step(torch.full((len(src), 1), BOS), k0, v0, ck, cv, keep)
        second = logp0.argmax(-1, keepdim=True)
        logp1, k2, v2 = model.step(second, k1, v1, ck, cv, keep)
    enc = {"cross_k": ck, "cross_v": cv, "src_keep": keep}
    ref = {"encoder.in.src": src, **{f"encoder.out.{k}": v.numpy() for k, v in enc.items()}}
    ref.update({"decoder_step.in.token": second.numpy(), "decoder_step.in.self_k": k1.numpy(),
                "decoder_step.in.self_v": v1.numpy(), **{f"decoder_step.in.{k}": v.numpy() for k, v in enc.items()},
                "decoder_step.out.logp": logp1.numpy(), "decoder_step.out.new_k": k2.numpy(),
                "decoder_step.out.new_v": v2.numpy()})
    return ref


def save_translator(model: Transformer, tokenizer_file, cfg, name: str, version: str, metrics: dict,
                    provenance: dict, drift_sources: list[str], check_sources: list[list[int]],
                    overwrite: bool = False, root=None) -> Path:
    """Graphs + tokenizer + decode settings of `cfg` as a dlm-bundle/1. Before the bundle is renamed into
    place, the torch-free Translator must decode `check_sources` to exactly torch's tokens, greedy and with
    the bundle's beam, or nothing is saved."""
    def same_tokens_as_torch(pred) -> None:
        for beam in sorted({1, cfg.beam}):
            want = translate_ids(model, check_sources, cfg.max_len + 1, beam=beam, alpha=cfg.length_alpha,
                                 no_repeat_ngram=cfg.no_repeat_ngram)
            pred.post["beam"] = beam
            if pred.translate_ids([np.asarray(i, np.int64) for i in check_sources]) != want:
                raise DlmError(f"ONNX Runtime {'greedy' if beam == 1 else f'beam-{beam}'} tokens differ from "
                               "torch's; the export is not faithful, nothing saved")

    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(model, tmp)
        torch.save(model.state_dict(), tmp / "model.pt")
        bundle = save_bundle(
            name, version, task="translation",
            graphs={"encoder": tmp / "encoder.onnx", "decoder_step": tmp / "decoder_step.onnx"},
            preprocess=text_preprocess("src", cfg.max_len, truncate=False, pad_id=PAD),
            postprocess=translator_postprocess(model, cfg), reference=reference_arrays(model, D.pad(check_sources)),
            metrics=metrics, provenance=provenance, drift_inputs=drift_sources,
            files={"tokenizer.json": tokenizer_file, "model.pt": tmp / "model.pt"}, overwrite=overwrite,
            check=same_tokens_as_torch, root=root)
    return bundle.path


def export_bundle(run_path: str | Path, version: str | None = None, overwrite: bool = False,
                  name: str = BUNDLE_NAME, n_drift: int = 600) -> Path:
    """A trained run as a dlm-bundle/1: its test scores, the decoding it was scored with (beam, length alpha,
    n-gram blocking, chosen on val) and a drift reference from `n_drift` validation sentences."""
    model, tok, cfg, run = load_run(run_path)
    res = json.loads((run.path / "results.json").read_text()) if (run.path / "results.json").is_file() else {}
    if "test_bleu" not in res:
        raise DlmError(f"{run.path} has no test score in results.json: the run did not finish; --resume it")
    values = {k: v for k, v in res.items() if k.startswith("test_") and isinstance(v, (int, float))}
    for base in ("ibm_model1", "copy_source"):
        if base in res.get("baselines", {}):
            values[f"baseline_{base}_bleu"] = res["baselines"][base]["bleu"]
    _, val_pairs, _ = D.load_pairs(cfg)
    val_src = [en for en, _ in val_pairs if 0 < len(D.encode(tok, en)) <= cfg.max_len]
    return save_translator(
        model, run.file("tokenizer.json"), cfg, name, version or run.path.name,
        {"split": "test", "headline": "test_bleu", "values": values},
        provenance("p05_transformer", run.path, "bible-en-es", D.SPLIT_SEED, cfg.seed, dataclasses.asdict(cfg)),
        val_src[:n_drift], [D.encode(tok, en) for en in val_src[:8]], overwrite)
