"""FAISS indexes over the document embeddings: Flat (exact inner product), HNSW and IVF-PQ.

An index is saved as a folder: index.faiss (faiss.write_index), index.json (kind, parameters, the encoder
version and corpus hash it belongs to) and docs.jsonl (the document store). Loading checks the encoder
version, so an index built by another encoder is refused instead of returning nonsense.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import faiss
import numpy as np

from dlm_core.device import set_cpu_threads
from dlm_core.errors import DlmError
from dlm_core.io import read_json, write_json
from dlm_core.plotting import plt, save_figure

KINDS = ("flat", "hnsw", "ivfpq")


def set_threads(n: int) -> None:
    """torch and FAISS threads: on a CPU shared by many jobs one thread beats two (no spin-waiting)."""
    set_cpu_threads(n or None)
    faiss.omp_set_num_threads(n or (os.cpu_count() or 1))


def ivfpq_params(n: int, dim: int) -> dict:
    nlist = int(max(4, min(4 * math.sqrt(n), n // 39)))
    pq_m = next(m for m in (16, 8, 4, 2, 1) if dim % m == 0 and m <= dim // 4 or m == 1)
    nbits = int(max(1, min(8, math.floor(math.log2(max(2, n // 39))))))  # >= 39 training points per centroid
    return {"nlist": nlist, "pq_m": pq_m, "nbits": nbits}


def build_index(kind: str, emb: np.ndarray, hnsw_m: int = 32, ef_construction: int = 80, seed: int = 0):
    """(index, params, build seconds) for unit-vector embeddings (inner product = cosine)."""
    if kind not in KINDS:
        raise DlmError(f"--index {kind!r}: use one of {', '.join(KINDS)}")
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n, dim = emb.shape
    t0 = time.perf_counter()
    if kind == "flat":
        index, params = faiss.IndexFlatIP(dim), {}
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        params = {"M": hnsw_m, "efConstruction": ef_construction}
    else:
        params = ivfpq_params(n, dim)
        index = faiss.index_factory(dim, f"IVF{params['nlist']},PQ{params['pq_m']}x{params['nbits']}",
                                    faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.pq.cp.seed = seed
        index.train(emb)
    index.add(emb)
    return index, params, time.perf_counter() - t0


def set_search_param(index, kind: str, value: int | None) -> None:
    """efSearch for HNSW, nprobe for IVF-PQ; nothing for Flat."""
    if value is None or kind == "flat":
        return
    if kind == "hnsw":
        index.hnsw.efSearch = int(value)
    else:
        index.nprobe = int(value)


def index_bytes(index) -> int:
    return int(faiss.serialize_index(index).nbytes)


def search(index, queries: np.ndarray, k: int):
    """(scores, ids) with k clamped to the index size. Flat always returns k documents; HNSW searches with
    efSearch >= k; IVF-PQ may return fewer than k (ids of -1) when its nprobe lists hold fewer documents."""
    k = max(1, min(k, index.ntotal))
    hnsw = getattr(index, "hnsw", None)
    old = hnsw.efSearch if hnsw is not None else None
    if hnsw is not None and k > old:
        hnsw.efSearch = k
    try:
        return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    finally:
        if hnsw is not None:
            hnsw.efSearch = old


def recall_vs_exact(ids: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a[:k]) & set(b)) / k for a, b in zip(ids, exact)]))


def benchmark(emb: np.ndarray, queries: np.ndarray, k: int = 10, ef_search=(16, 32, 64, 128, 256),
              nprobe=(1, 4, 16, 64), repeats: int = 3) -> list[dict]:
    """Build time, memory, queries/s (median of `repeats` full passes) and recall of the exact top-k."""
    rows = []
    exact = None
    for kind, values in (("flat", (None,)), ("hnsw", ef_search), ("ivfpq", nprobe)):
        index, params, build_s = build_index(kind, emb)
        mem = index_bytes(index)
        for v in values:
            if kind == "ivfpq" and v > params["nlist"]:
                continue
            set_search_param(index, kind, v)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                _, ids = search(index, queries, k)
                times.append(time.perf_counter() - t0)
            if exact is None:
                exact = ids
            rows.append({"index": kind, "param": {"hnsw": "efSearch", "ivfpq": "nprobe"}.get(kind, "-"),
                         "value": v, "build_s": build_s, "memory_mb": mem / 2**20,
                         "qps": len(queries) / float(np.median(times)),
                         "recall@10_vs_exact": recall_vs_exact(ids, exact),
                         **params})
    return rows


def plot_recall_qps(rows: list[dict], path, title: str = "") -> None:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 3.8))
    for kind in KINDS:
        pts = [r for r in rows if r["index"] == kind]
        if not pts:
            continue
        ax.plot([r["recall@10_vs_exact"] for r in pts], [r["qps"] for r in pts], marker="o", label=kind)
        for r in pts:
            if r["value"] is not None:
                ax.annotate(str(r["value"]), (r["recall@10_vs_exact"], r["qps"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("recall@10 of the exact top-10")
    ax.set_ylabel("queries / s")
    ax.set_yscale("log")
    ax.set_title(title or "FAISS: recall vs speed (labels: efSearch / nprobe)")
    ax.legend()
    save_figure(fig, path)


# --- save / load ----------------------------------------------------------------------------------------
def save_index(directory, index, meta: dict, docs: list[dict]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "index.faiss.tmp"
    faiss.write_index(index, str(tmp))
    tmp.replace(directory / "index.faiss")
    lines = "".join(json.dumps({k: d[k] for k in ("id", "synopsis", "section", "text")}, ensure_ascii=False) + "\n"
                    for d in docs)
    (directory / "docs.jsonl.tmp").write_text(lines, encoding="utf-8")
    (directory / "docs.jsonl.tmp").replace(directory / "docs.jsonl")
    write_json(directory / "index.json", {**meta, "ntotal": int(index.ntotal)})
    return directory


def load_index(directory, expected_version: str | None = None):
    """(index, meta, docs). DlmError if the folder is not an index or was built by another encoder."""
    directory = Path(directory)
    if not (directory / "index.json").is_file() or not (directory / "index.faiss").is_file():
        raise DlmError(f"{directory} is not an index folder (needs index.faiss + index.json); "
                       "build one with run_build_index <run dir>")
    meta = read_json(directory / "index.json")
    if expected_version is not None and meta.get("encoder_version") != expected_version:
        raise DlmError(f"index {directory} was built by encoder {meta.get('encoder_version')} but the model is "
                       f"{expected_version}; rebuild it with: run_build_index {meta.get('run_dir', '<run dir>')}")
    index = faiss.read_index(str(directory / "index.faiss"))
    with open(directory / "docs.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    if len(docs) != index.ntotal:
        raise DlmError(f"{directory}: docs.jsonl has {len(docs)} documents but the index {index.ntotal}; rebuild it")
    return index, meta, docs
