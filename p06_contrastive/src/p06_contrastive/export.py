"""Export for serving: the encoder as ONNX (dynamic batch and length), checked against torch, bundled with
the tokenizer, a FAISS index and the document store (dlm_core bundle, sha256 manifest)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from dlm_core.errors import DlmError


def export_onnx(encoder, path, max_len: int, query: bool = False) -> Path:
    """The encoder as one ONNX graph; query=True: the query side of an asymmetric encoder."""
    import torch

    from .model import SideEncoder

    encoder.eval()
    side = SideEncoder(encoder, query).eval()
    example = torch.randint(1, encoder.tok.num_embeddings, (2, min(16, max_len)))
    batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("length", min=2, max=max_len)
    torch.onnx.export(side, (example,), str(path), dynamo=True, input_names=["input_ids"],
                      output_names=["sentence_embedding"], dynamic_shapes=({0: batch, 1: length},),
                      external_data=False, verbose=False)
    return Path(path)


def ort_session(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def parity(encoder, session, ids: np.ndarray, query: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    import torch

    with torch.no_grad():
        ref = encoder(torch.from_numpy(ids), query=query).numpy()
    got = session.run(None, {"input_ids": ids})[0]
    return ref, got, float(np.abs(ref - got).max())


def plot_parity(ref: np.ndarray, got: np.ndarray, path) -> None:
    from dlm_core.plotting import plt, save_figure

    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(4.2, 4))
    ax.scatter(ref.ravel(), got.ravel(), s=2, alpha=0.5)
    lim = [float(min(ref.min(), got.min())), float(max(ref.max(), got.max()))]
    ax.plot(lim, lim, lw=0.8, color="k")
    ax.set_xlabel("torch")
    ax.set_ylabel("ONNX Runtime")
    ax.set_title(f"encoder parity: max |diff| {np.abs(ref - got).max():.2e}")
    save_figure(fig, path)


def run_export(run_path, index_kind: str = "hnsw", version: str | None = None, overwrite: bool = False) -> dict:
    from dlm_core.bundle import save_bundle

    from .data import encode, load_corpus
    from .evaluate import corpus_embeddings, load_run
    from .index import build_index, save_index
    from .model import is_asymmetric

    lr = load_run(run_path)
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    max_len = max(lr.cfg.max_doc_len, lr.cfg.max_query_len)
    with tempfile.TemporaryDirectory(prefix="p06-export-") as tmp:
        tmp = Path(tmp)
        export_onnx(lr.encoder, tmp / "model.onnx", max_len)
        sess = ort_session(tmp / "model.onnx")
        texts = [d["text"] for d in ds.docs[:24]] + [d["synopsis"] for d in ds.docs[24:32]]
        ids = encode(lr.tokenizer, texts, lr.cfg.max_doc_len)
        ref, got, diff = parity(lr.encoder, sess, ids)
        ids_short = encode(lr.tokenizer, texts[:3], 7)  # another batch size and length
        diff = max(diff, parity(lr.encoder, sess, ids_short)[2])
        files = {"model.onnx": tmp / "model.onnx"}
        if is_asymmetric(lr.encoder):  # queries weigh their tokens with their own scores: a second graph
            export_onnx(lr.encoder, tmp / "query_model.onnx", max_len, query=True)
            q_sess = ort_session(tmp / "query_model.onnx")
            q_ids = encode(lr.tokenizer, [d["synopsis"] for d in ds.docs[:32]], lr.cfg.max_query_len)
            diff = max(diff, parity(lr.encoder, q_sess, q_ids, query=True)[2],
                       parity(lr.encoder, q_sess, ids_short, query=True)[2])
            files["query_model.onnx"] = tmp / "query_model.onnx"
        if diff > 1e-4:
            raise DlmError(f"ONNX export does not match torch (max |diff| {diff:.2e} > 1e-4)")
        plot_parity(ref, got, tmp / "parity.png")
        np.save(tmp / "reference_input_ids.npy", ids)
        np.save(tmp / "reference_output.npy", ref)
        emb = corpus_embeddings(lr, ds.docs)
        index, params, _ = build_index(index_kind, emb)
        save_index(tmp / "index", index, {"kind": index_kind, "params": params, "encoder_version": lr.version,
                                          "corpus_sha256": ds.info["sha256"], "run_dir": str(lr.path)}, ds.docs)
        metrics = {"parity_max_abs_diff": diff}
        eval_file = lr.path / "eval_test.json"
        if eval_file.exists():
            import json

            metrics.update(json.loads(eval_file.read_text())["metrics"])
        files.update({"tokenizer.json": lr.path / "tokenizer.json",
                 "index.faiss": tmp / "index" / "index.faiss", "index.json": tmp / "index" / "index.json",
                 "docs.jsonl": tmp / "index" / "docs.jsonl", "parity.png": tmp / "parity.png",
                 "reference_input_ids.npy": tmp / "reference_input_ids.npy",
                 "reference_output.npy": tmp / "reference_output.npy"})
        preprocess = {"tokenizer": "tokenizer.json", "lowercase": True, "pad_id": 0,
                      "max_query_len": lr.cfg.max_query_len,
                      "max_doc_len": lr.cfg.max_doc_len, "input": "input_ids int64 (batch, length), 0 = padding",
                      "output": "embedding float32 (batch, dim), L2-normalised (weighted mean pooling)",
                      "document_model": "model.onnx",
                      "query_model": "query_model.onnx" if "query_model.onnx" in files else "model.onnx",
                      "similarity": "inner product", "index": "index.faiss", "documents": "docs.jsonl"}
        bundle = save_bundle("p06_contrastive", version or lr.version, files, preprocess=preprocess,
                             labels=sorted({d["section"] for d in ds.docs}), metrics=metrics,
                             extra={"encoder_version": lr.version, "corpus_sha256": ds.info["sha256"],
                                    "index_kind": index_kind, "run_dir": str(lr.path)}, overwrite=overwrite)
    print(f"bundle: {bundle.path} (parity max |diff| {diff:.2e}, index {index_kind}, {len(ds.docs)} docs)", flush=True)
    return {"bundle": str(bundle.path), "parity_max_abs_diff": diff}
