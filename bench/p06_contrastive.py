"""p06 bench: encoder throughput (torch eager vs ONNX Runtime) and the FAISS Flat / HNSW / IVF-PQ table.

Uses the newest trained run under runs/p06_contrastive/ (or --run); with none, it trains the quick preset
first. Headline ratio = HNSW queries/s at the smallest efSearch reaching recall@10 >= 0.95 of the exact
top-10, divided by Flat queries/s (higher is better). Both sides single-threaded (the CPU is shared).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# this file is named like the package: keep bench/ off the import path so `p06_contrastive` is the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def newest_run() -> Path | None:
    from dlm_core.runs import runs_root

    found = sorted((runs_root() / "p06_contrastive").glob("*/checkpoints/best.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent.parent if found else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", help="trained run (default: the newest)")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    import torch

    from dlm_core.benchmark import interleaved_medians, machine, write_result
    from p06_contrastive.data import encode, load_corpus
    from p06_contrastive.evaluate import corpus_embeddings, load_run, query_embeddings
    from p06_contrastive.export import export_side
    from p06_contrastive.index import benchmark
    from p06_contrastive.model import SideEncoder

    run = Path(args.run) if args.run else newest_run()
    if run is None:
        from p06_contrastive.config import PRESETS
        from p06_contrastive.train import run_train

        run = Path(run_train(PRESETS["quick"], preset="quick")["run_dir"])
    lr = load_run(run)  # also sets 1 torch / FAISS thread
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    ids = encode(lr.tokenizer, [d["text"] for d in ds.docs[:256]], lr.cfg.max_doc_len)
    with tempfile.TemporaryDirectory() as tmp:
        export_side(SideEncoder(lr.encoder, False), Path(tmp) / "m.onnx", max(lr.cfg.max_doc_len, lr.cfg.max_query_len))
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(Path(tmp) / "m.onnx"), opts, providers=["CPUExecutionProvider"])
        tids = torch.from_numpy(ids)

        def torch_run():
            with torch.no_grad():
                lr.encoder(tids)

        med = interleaved_medians({"torch": torch_run, "onnxruntime": lambda: sess.run(None, {"input_ids": ids})},
                                  rounds=args.rounds, warmup=1)
    enc = {k: len(ids) / v for k, v in med.items()}
    t0 = time.perf_counter()
    emb = corpus_embeddings(lr, ds.docs)
    queries, _ = ds.queries("test")
    qemb = query_embeddings(lr, queries)
    rows = benchmark(emb, qemb, k=10)
    flat = next(r for r in rows if r["index"] == "flat")
    good = [r for r in rows if r["index"] == "hnsw" and r["recall@10_vs_exact"] >= 0.95]
    hnsw = min(good, key=lambda r: r["value"]) if good else max((r for r in rows if r["index"] == "hnsw"),
                                                                   key=lambda r: r["recall@10_vs_exact"])
    result = {
        "bench": "p06_contrastive", "machine": {**machine(), "note": "1 thread"},
        "ours": {"hnsw_qps": hnsw["qps"], "hnsw_efSearch": hnsw["value"], "hnsw_recall@10": hnsw["recall@10_vs_exact"],
                 "encode_docs_per_s_onnxruntime": enc["onnxruntime"]},
        "peer": {"flat_qps": flat["qps"], "encode_docs_per_s_torch": enc["torch"]},
        "ratio": hnsw["qps"] / flat["qps"],
        "goal": "ratio = HNSW queries/s at recall@10 >= 0.95 (smallest such efSearch) / exact Flat queries/s; "
                "higher is better" + ("" if good else " (HNSW never reached 0.95 here: best recall used)"),
        "onnx_vs_torch_encode_ratio": enc["onnxruntime"] / enc["torch"],
        "encode_batch": [int(ids.shape[0]), int(ids.shape[1])],
        "corpus": len(emb), "queries": len(qemb), "dim": int(emb.shape[1]), "run": str(run),
        "encoder_version": lr.version, "faiss_table": rows, "seconds": time.perf_counter() - t0,
    }
    write_result("p06_contrastive", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
