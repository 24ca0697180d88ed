"""Retrieval metrics, the TF-IDF / BM25 baselines, reciprocal-rank fusion, and the test-set evaluation.

Each test query (a synopsis) has exactly one relevant document (its long description) among all
documents of the corpus. Metrics: Recall@k (is it in the top k), MRR@10, nDCG@10 (binary gains).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import bm25s
import faiss
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.manifold import TSNE

from dlm_core.checkpoint import Checkpointer
from dlm_core.errors import DlmError
from dlm_core.io import read_json, write_json
from dlm_core.plotting import plt, save_figure
from dlm_core.runs import RunDir, print_metrics

from .config import Config
from .data import encode, load_corpus, load_tokenizer
from .index import benchmark, plot_recall_qps, set_threads
from .model import build_encoder, embed, encoder_version

KS = (1, 10, 100)


# --- metrics ------------------------------------------------------------------------------------------
def recall_at_k(ranked: list, relevant: list[set], k: int) -> float:
    """Mean over queries of |top-k ∩ relevant| / |relevant|."""
    return float(np.mean([len(set(list(r)[:k]) & rel) / len(rel) for r, rel in zip(ranked, relevant)]))


def mrr_at_k(ranked: list, relevant: list[set], k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant result within the top k (0 if none)."""
    out = []
    for r, rel in zip(ranked, relevant):
        out.append(next((1.0 / (i + 1) for i, doc in enumerate(list(r)[:k]) if doc in rel), 0.0))
    return float(np.mean(out))


def ndcg_at_k(ranked: list, relevant: list[set], k: int = 10) -> float:
    """Binary-gain nDCG: sum 1/log2(rank+1) over relevant hits, divided by the ideal ranking's sum."""
    out = []
    for r, rel in zip(ranked, relevant):
        dcg = sum(1.0 / np.log2(i + 2) for i, doc in enumerate(list(r)[:k]) if doc in rel)
        ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(rel), k)))
        out.append(dcg / ideal)
    return float(np.mean(out))


def first_ranks(ids: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """1-based rank of rel[i] in row ids[i], 0 when it is not there."""
    hit = ids == np.asarray(rel)[:, None]
    return np.where(hit.any(1), hit.argmax(1) + 1, 0)


def rank_metrics(ranks: np.ndarray) -> dict:
    """The metrics from single-relevant ranks (0 = not retrieved), equal to the functions above."""
    ranks = np.asarray(ranks)
    found = ranks > 0
    out = {f"recall@{k}": float(np.mean(found & (ranks <= k))) for k in KS}
    top10 = found & (ranks <= 10)
    out["mrr@10"] = float(np.mean(np.where(top10, 1.0 / np.maximum(ranks, 1), 0.0)))
    out["ndcg@10"] = float(np.mean(np.where(top10, 1.0 / np.log2(np.maximum(ranks, 1) + 1), 0.0)))
    return out


def per_query_ndcg10(ranks: np.ndarray) -> np.ndarray:
    """nDCG@10 of each query from its single relevant document's rank (0 = not retrieved)."""
    ranks = np.asarray(ranks)
    return np.where((ranks > 0) & (ranks <= 10), 1.0 / np.log2(np.maximum(ranks, 1) + 1), 0.0)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    """Mean of a - b over queries with a 95% interval from resampling the queries (the same resample for both
    systems), and p = the share of resamples where a does not beat b."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(diff), (resamples, len(diff)))
    means = diff[idx].mean(1)
    ci95 = [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]
    return {"mean_diff": float(diff.mean()), "ci95": ci95, "p_not_better": float(np.mean(means <= 0)),
            "resamples": resamples}


# --- retrievers ---------------------------------------------------------------------------------------
def exact_search(q: np.ndarray, d: np.ndarray, rel: np.ndarray | None = None, k: int = 100):
    """Exact inner-product top-k (FAISS Flat) -> (ids, ranks of rel or None)."""
    index = faiss.IndexFlatIP(d.shape[1])
    index.add(np.ascontiguousarray(d, dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(q, dtype=np.float32), min(k, len(d)))
    return ids, (first_ranks(ids, rel) if rel is not None else None)


class BM25:
    """bm25s (Okapi BM25, English stop words) over the document texts."""

    def __init__(self, texts: list[str]):
        self.n = len(texts)
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def search(self, queries: list[str], k: int = 100):
        k = min(k, self.n)
        tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False)
        ids, scores = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return np.asarray(ids), np.asarray(scores)


class TfIdf:
    """scikit-learn TF-IDF (sublinear tf, English stop words), cosine similarity."""

    def __init__(self, texts: list[str]):
        self.vec = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2, dtype=np.float32)
        self.docs = self.vec.fit_transform(texts).T.tocsr()

    def search(self, queries: list[str], k: int = 100, chunk: int = 256):
        q = self.vec.transform(queries)
        k = min(k, self.docs.shape[1])
        ids, scores = [], []
        for s in range(0, q.shape[0], chunk):
            sim = (q[s:s + chunk] @ self.docs).toarray()
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            part = np.take_along_axis(sim, top, 1)
            order = np.argsort(-part, axis=1, kind="stable")
            ids.append(np.take_along_axis(top, order, 1))
            scores.append(np.take_along_axis(part, order, 1))
        return np.concatenate(ids), np.concatenate(scores)


def rrf(rankings: list[np.ndarray], k: int = 100, k0: int = 60, weights: list[float] | None = None) -> np.ndarray:
    """Reciprocal-rank fusion: score(doc) = sum over lists of w / (k0 + rank); the top k of the fused list."""
    weights = weights or [1.0] * len(rankings)
    out = np.full((rankings[0].shape[0], k), -1, dtype=np.int64)
    for i in range(rankings[0].shape[0]):
        score: dict[int, float] = {}
        for w, ranking in zip(weights, rankings):
            for r, doc in enumerate(ranking[i]):
                if doc >= 0:
                    score[int(doc)] = score.get(int(doc), 0.0) + w / (k0 + r + 1)
        top = sorted(score, key=lambda d: (-score[d], d))[:k]
        out[i, :len(top)] = top
    return out


# --- a trained run ------------------------------------------------------------------------------------
@dataclasses.dataclass
class LoadedRun:
    path: Path
    cfg: object
    tokenizer: object
    encoder: object
    version: str
    epoch: int


def load_run(path) -> LoadedRun:
    """The best checkpoint's encoder (eval mode, CPU), its tokenizer and config."""
    run = RunDir.open(path)
    if not run.file("tokenizer.json").exists():
        raise DlmError(f"{path} has no tokenizer.json; is it a p06_contrastive run? train with run_contrastive_train")
    cfg = Config(**run.load_config())
    set_threads(cfg.threads)
    tok = load_tokenizer(run.file("tokenizer.json"))
    state = Checkpointer(run.checkpoint_dir).best()
    encoder = build_encoder(cfg, state["vocab_size"], state.get("members", 1))
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")})
    encoder.eval()
    return LoadedRun(run.path, cfg, tok, encoder, encoder_version(encoder), int(state["epoch"]))


def corpus_embeddings(lr: LoadedRun, docs: list[dict], batch_size: int = 512) -> np.ndarray:
    """All document embeddings, cached in the run as embeddings.npy (tagged with the encoder version)."""
    npy, meta = lr.path / "embeddings.npy", lr.path / "embeddings.json"
    if npy.exists() and meta.exists():
        info = read_json(meta)
        if info.get("encoder_version") == lr.version and info.get("n") == len(docs):
            return np.load(npy)
    ids = encode(lr.tokenizer, [d["text"] for d in docs], lr.cfg.max_doc_len)
    emb = embed(lr.encoder, ids, batch_size, progress_desc="encode corpus")
    np.save(npy, emb)
    write_json(meta, {"encoder_version": lr.version, "n": len(docs)})
    return emb


def query_embeddings(lr: LoadedRun, queries: list[str]) -> np.ndarray:
    return embed(lr.encoder, encode(lr.tokenizer, queries, lr.cfg.max_query_len), 512, query=True)


# --- plots --------------------------------------------------------------------------------------------
def plot_variance(emb: np.ndarray, path) -> dict:
    """Per-dimension standard deviation (sorted) and the PCA spectrum: a collapsed encoder has a few dims."""
    std = np.sort(emb.std(0))[::-1]
    eig = np.linalg.eigvalsh(np.cov(emb.T))[::-1]
    eig = np.clip(eig, 0, None) / max(eig.sum(), 1e-12)
    pyplot = plt()
    fig, (a, b) = pyplot.subplots(1, 2, figsize=(9, 3.4))
    a.bar(np.arange(len(std)), std, width=1.0)
    a.set_xlabel("dimension (sorted)")
    a.set_ylabel("std over documents")
    a.set_title("embedding spread per dimension")
    b.plot(np.cumsum(eig))
    b.set_xlabel("principal components")
    b.set_ylabel("cumulative explained variance")
    b.set_title("PCA spectrum")
    save_figure(fig, path)
    participation = float(1.0 / np.sum(eig ** 2))  # effective number of dimensions
    return {"dim_std_min": float(std.min()), "dim_std_max": float(std.max()), "effective_dims": participation}


def plot_tsne(emb: np.ndarray, sections: list[str], path, n: int = 2500, top: int = 8, seed: int = 0) -> None:
    counts: dict[str, int] = {}
    for s in sections:
        counts[s] = counts.get(s, 0) + 1
    keep_sections = sorted(counts, key=lambda s: -counts[s])[:top]
    pool = np.array([i for i, s in enumerate(sections) if s in keep_sections])
    idx = np.random.default_rng(seed).choice(pool, min(n, len(pool)), replace=False)
    xy = TSNE(n_components=2, init="pca", perplexity=30, random_state=seed, max_iter=750).fit_transform(emb[idx])
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7, 5.5))
    for s in keep_sections:
        m = np.array([sections[i] == s for i in idx])
        ax.scatter(xy[m, 0], xy[m, 1], s=4, label=s, alpha=0.7)
    ax.set_title(f"t-SNE of {len(idx)} document embeddings, {top} largest Sections")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3, fontsize=8, loc="best")
    save_figure(fig, path)


# --- the evaluation -----------------------------------------------------------------------------------
def tune_fusion(lr: LoadedRun, ds, bm25: BM25, emb: np.ndarray, weights=(0.25, 0.5, 1.0, 2.0, 4.0),
                k0s=(10, 30, 60), val_rankings=None):
    """The dense weight and RRF constant k0 of the BM25 + dense fusion with the best nDCG@10 on the validation
    queries (ties: the smaller weight, then the larger k0). val_rankings: their (BM25, dense) top-100 lists
    when the caller has them already."""
    queries, rel = ds.queries("val")
    if len(queries) == 0:
        return (1.0, 60), {}
    if val_rankings is None:
        val_rankings = bm25.search(queries, 100)[0], exact_search(query_embeddings(lr, queries), emb, k=100)[0]
    b_ids, d_ids = val_rankings
    scores = {(w, k0): rank_metrics(first_ranks(rrf([b_ids, d_ids], 100, k0=k0, weights=[1.0, w]), rel))["ndcg@10"]
              for w in weights for k0 in k0s}
    best = max(scores, key=lambda s: (scores[s], -s[0], s[1]))
    return best, {f"w={w} k0={k0}": v for (w, k0), v in scores.items()}


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def run_evaluate(run_path, split: str = "test", faiss_table: bool = True, tsne_points: int = 2500,
                 examples: int = 6) -> dict:
    if split not in ("val", "test"):
        raise DlmError(f"--split {split!r}: use val or test")
    lr = load_run(run_path)
    run = RunDir.open(run_path)
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    queries, rel = ds.queries(split)
    texts = ds.texts
    print(f"{split}: {len(queries)} queries vs {len(texts)} documents (snapshot {ds.info['sha256'][:12]})", flush=True)

    t0 = time.perf_counter()
    emb = corpus_embeddings(lr, ds.docs)
    qemb = query_embeddings(lr, queries)
    dense_ids, _ = exact_search(qemb, emb, k=100)
    times = {"dense_encode_and_search_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    bm25 = BM25(texts)
    bm25_ids, _ = bm25.search(queries, 100)  # timed with its indexing
    times["bm25_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tfidf_ids, _ = TfIdf(texts).search(queries, 100)
    times["tfidf_s"] = time.perf_counter() - t0
    hybrid_ids = rrf([bm25_ids, dense_ids], k=100)
    # a weighted fusion whose dense weight is chosen on the validation queries (never on test)
    (w_dense, k0), tuning = tune_fusion(lr, ds, bm25, emb,
                                        val_rankings=(bm25_ids, dense_ids) if split == "val" else None)
    weighted_ids = rrf([bm25_ids, dense_ids], k=100, k0=k0, weights=[1.0, w_dense])
    ranks = {name: first_ranks(ids, rel) for name, ids in
             (("dense", dense_ids), ("bm25", bm25_ids), ("tfidf", tfidf_ids), ("hybrid_rrf", hybrid_ids),
              ("hybrid_rrf_weighted", weighted_ids))}
    results = {name: rank_metrics(r) for name, r in ranks.items()}
    for name, m in results.items():
        print_metrics(model=name, **{k: m[k] for k in ("recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10")})
    per_query = {name: per_query_ndcg10(ranks[name]) for name in ("dense", "bm25", "hybrid_rrf_weighted")}
    significance = {f"{a}_vs_{b}": paired_bootstrap(per_query[a], per_query[b])
                    for a, b in (("dense", "bm25"), ("hybrid_rrf_weighted", "bm25"), ("hybrid_rrf_weighted", "dense"))}
    for key, sig in significance.items():
        print(f"nDCG@10 {key}: {sig['mean_diff']:+.4f} (95% CI {sig['ci95'][0]:+.4f}..{sig['ci95'][1]:+.4f}, "
              f"p {sig['p_not_better']:.4f})", flush=True)

    variance = plot_variance(emb, run.file("embedding_variance.png"))
    if tsne_points:
        plot_tsne(emb, [d["section"] for d in ds.docs], run.file("tsne_sections.png"), n=tsne_points,
                  seed=lr.cfg.seed)
    rows = []
    if faiss_table:
        rows = benchmark(emb, qemb, k=10)
        plot_recall_qps(rows, run.file("recall_vs_qps.png"),
                        f"FAISS on {len(emb)} docs x {emb.shape[1]} dims, {len(qemb)} queries")
    picks = np.random.default_rng(0).choice(len(queries), min(examples, len(queries)), replace=False)
    example_rows = [{"query": queries[i], "relevant": ds.docs[rel[i]]["id"],
                     "bm25": [ds.docs[j]["id"] for j in bm25_ids[i, :3]],
                     "dense": [ds.docs[j]["id"] for j in dense_ids[i, :3]]} for i in picks]

    out = {"split": split, "queries": len(queries), "corpus": len(texts), "snapshot_sha256": ds.info["sha256"],
           "encoder_version": lr.version, "epoch": lr.epoch, "metrics": results, "embedding_variance": variance,
           "faiss": rows, "examples": example_rows, "seconds": times, "ndcg10_paired_bootstrap": significance,
           "fusion": {"dense_weight": w_dense, "k0": k0, "val_ndcg10_by_setting": tuning}}
    run.write_json(f"eval_{split}.json", out)
    _append_report(run, out)
    print(f"report: {run.file('report.md')}", flush=True)
    return out


def _append_report(run, out: dict) -> None:
    names = {"dense": "dense encoder (this run)", "bm25": "BM25 (bm25s)", "tfidf": "TF-IDF (sklearn)",
             "hybrid_rrf": "hybrid BM25 + dense (RRF)",
             "hybrid_rrf_weighted": "hybrid, dense weight and k0 chosen on val (RRF)"}
    lines = [f"\n## Retrieval on the {out['split']} queries\n",
             f"{out['queries']} queries, corpus of {out['corpus']} documents "
             f"(snapshot `{out['snapshot_sha256'][:16]}`),"
             f" encoder `{out['encoder_version']}`.\n",
             "| retriever | R@1 | R@10 | R@100 | MRR@10 | nDCG@10 |", "|---|---|---|---|---|---|"]
    for key, m in out["metrics"].items():
        lines.append(f"| {names[key]} | {m['recall@1']:.4f} | {m['recall@10']:.4f} | {m['recall@100']:.4f} | "
                     f"{m['mrr@10']:.4f} | {m['ndcg@10']:.4f} |")
    f = out["fusion"]
    lines.append(f"\nWeighted fusion: dense weight {f['dense_weight']} (BM25 weight 1) and k0 {f['k0']}, chosen by "
                 f"validation nDCG@10 {f['val_ndcg10_by_setting']}.\n")
    lines.append("\nPaired bootstrap over the queries (nDCG@10, 2,000 resamples):\n")
    for key, sig in out["ndcg10_paired_bootstrap"].items():
        lines.append(f"- {key}: {sig['mean_diff']:+.4f} (95% interval {sig['ci95'][0]:+.4f} to "
                     f"{sig['ci95'][1]:+.4f}; share of resamples not better: {sig['p_not_better']:.4f})")
    v = out["embedding_variance"]
    lines.append(f"\nEmbedding spread: per-dimension std {v['dim_std_min']:.4f}..{v['dim_std_max']:.4f}, "
                 f"effective dimensions {v['effective_dims']:.1f}.\n\n![variance](embedding_variance.png)\n")
    if out["faiss"]:
        lines += ["\n| index | param | value | build s | memory MB | queries/s | recall@10 vs exact |",
                  "|---|---|---|---|---|---|---|"]
        for r in out["faiss"]:
            lines.append(f"| {r['index']} | {r['param']} | {r['value'] if r['value'] is not None else '-'} | "
                         f"{r['build_s']:.2f} | {r['memory_mb']:.1f} | {r['qps']:.0f} | "
                         f"{r['recall@10_vs_exact']:.3f} |")
        lines.append("\n![recall vs qps](recall_vs_qps.png) ![t-SNE](tsne_sections.png)\n")
    lines += ["\n| query | relevant | BM25 top-3 | encoder top-3 |", "|---|---|---|---|"]
    for e in out["examples"]:
        lines.append(f"| {_short(e['query'])} | {e['relevant']} | {', '.join(e['bm25'])} | {', '.join(e['dense'])} |")
    path = run.file("report.md")
    prev = path.read_text() if path.exists() else ""
    marker = f"\n## Retrieval on the {out['split']} queries\n"
    if marker in prev:
        prev = prev[: prev.index(marker)]
    run.write_report(prev + "\n".join(lines) + "\n")
