"""p05 bench: greedy decoding speed of the translator with and without the key/value cache (torch), and
torch (cached) vs ONNX Runtime (encoder.onnx + decoder_step.onnx). Batch 1, a fixed 40 steps per sentence
(no early stop, so every variant does the same work), 12 real test sentences, runs interleaved, medians.

    python bench/p05_transformer.py [--run runs/p05_transformer/<run>]

Uses the latest trained run (or a freshly initialised default-size model when there is none).
ratio = cached / uncached seconds per sentence (lower is better).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from dlm_core.benchmark import interleaved_medians, machine, unshadow, write_result

unshadow(__file__, "p05_transformer")

STEPS, SENTENCES, REPEATS = 40, 12, 5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from dlm_core.data import load_dataset
    from dlm_core.errors import DlmError
    from dlm_core.predictors import ort_session
    from p05_transformer import data as D
    from p05_transformer.config import TransformerConfig
    from p05_transformer.decode import CachedStepper, UncachedStepper
    from p05_transformer.evaluate import latest_run, load_run
    from p05_transformer.export import export_onnx
    from p05_transformer.model import BOS
    from p05_transformer.train import build_model

    try:
        model, tok, cfg, run = load_run(args.run or latest_run())
        source = str(run.path)
    except DlmError:
        cfg = TransformerConfig()
        ds = load_dataset("bible-en-es")
        tok = D.train_tokenizer([t for p in ds.train for t in p], cfg.vocab_size)
        model, source = build_model(cfg, tok.get_vocab_size()).eval(), "untrained default-size model"
    test = load_dataset("bible-en-es", seed=cfg.seed).test[:SENTENCES]
    srcs = [torch.tensor([D.encode(tok, en)[:cfg.max_len]]) for en, _ in test]
    a = model.decoder[0].self_attn
    tmp = Path(tempfile.mkdtemp())
    export_onnx(model, tmp)
    enc_sess, step_sess = ort_session(tmp / "encoder.onnx"), ort_session(tmp / "decoder_step.onnx")

    def torch_run(src, stepper_cls):
        with torch.no_grad():
            step = stepper_cls(model, src)
            prefix = torch.full((1, 1), BOS)
            for _ in range(STEPS):
                prefix = torch.cat([prefix, step(prefix).argmax(-1, keepdim=True)], dim=1)

    def ort_run(src):
        s = src.numpy()
        ck, cv, keep = enc_sess.run(None, {"src": s})
        k = np.zeros((len(model.decoder), 1, a.heads, 0, a.d_k), np.float32)
        v, tokn = k, np.full((1, 1), BOS, np.int64)
        for _ in range(STEPS):
            logp, k, v = step_sess.run(None, {"token": tokn, "self_k": k, "self_v": v, "cross_k": ck, "cross_v": cv,
                                             "src_keep": keep})
            tokn = logp.argmax(-1)[:, None].astype(np.int64)

    variants = {"torch_cached": lambda s: torch_run(s, CachedStepper),
                "torch_uncached": lambda s: torch_run(s, UncachedStepper), "ort_cached": ort_run}
    # each call decodes all the sentences; the variants alternate so that load spikes hit them alike
    med = {k: v / len(srcs) for k, v in interleaved_medians(
        {name: (lambda f=f: [f(src) for src in srcs]) for name, f in variants.items()},
        rounds=REPEATS, warmup=1).items()}
    result = {
        "bench": f"p05_transformer greedy decoding, batch 1, {STEPS} steps/sentence, {SENTENCES} test sentences "
                 f"per call, median of {REPEATS} interleaved calls",
        "machine": {**machine(), "note": "torch and ORT on 1 thread"},
        "model": source,
        "ours": {"cached_s_per_sentence": med["torch_cached"], "cached_tokens_per_s": STEPS / med["torch_cached"]},
        "peer": {"uncached_s_per_sentence": med["torch_uncached"],
                 "uncached_tokens_per_s": STEPS / med["torch_uncached"],
                 "ort_cached_s_per_sentence": med["ort_cached"], "ort_cached_tokens_per_s": STEPS / med["ort_cached"]},
        "ratio": med["torch_cached"] / med["torch_uncached"],
        "ratio_torch_over_ort": med["torch_cached"] / med["ort_cached"],
        "goal": "ratio = cached / uncached seconds per sentence: lower is better (the KV cache should win)",
    }
    write_result("p05_transformer", result)


if __name__ == "__main__":
    main()
