"""Export for serving, as dlm-bundle/1 (core/README.md): the query side of the encoder as ONE ONNX graph,
the tokenizer, a FAISS index of every document and the document store, so a search needs nothing else.

Serving size: a bag-of-embeddings encoder (one run, or an ensemble of runs) is exported with int8 token
tables (one float scale per row), and the index may hold the documents projected onto the top `dims`
directions of their uncentred second moment (the query graph applies the same projection) and scalar-
quantised to 8 bits. An uncentred projection keeps inner products comparable across documents, which a
centred PCA would not. Which of these is used is chosen on the validation queries (`compact_options`).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlm_core.bundle import MIN_DRIFT_ROWS, bundle_size, provenance
from dlm_core.bundle_write import save_bundle
from dlm_core.errors import DlmError
from dlm_core.export import onnx_export, text_preprocess, torch_reference

from .data import encode, load_corpus, trim
from .evaluate import first_ranks, load_run, rank_metrics
from .model import BagEncoder, EncoderEnsemble, SideEncoder

BUNDLE_NAME = "package-search"


def bag_members(encoder: nn.Module) -> list[BagEncoder] | None:
    """The bag encoders inside `encoder` (one, or an ensemble's members); None for a transformer encoder."""
    members = list(encoder.members) if isinstance(encoder, EncoderEnsemble) else [encoder]
    if all(isinstance(m, BagEncoder) and not m.lexical_dim for m in members):
        return members
    return None


def quantize_rows(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: table ~= q * scale[:, None], |error| <= scale / 2."""
    scale = table.abs().amax(1).clamp(min=1e-12) / 127.0
    return torch.round(table / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


class CompactBagEncoder(nn.Module):
    """One side (query or document) of bag encoders with int8 tables: ids (B, T) -> unit vectors, the
    members' concatenation / sqrt(K) as in EncoderEnsemble, optionally projected (B, dims)."""

    def __init__(self, members: list[BagEncoder], query: bool, projection: np.ndarray | None = None):
        super().__init__()
        self.k = len(members)
        for i, m in enumerate(members):
            q, s = quantize_rows(m.tok.weight.detach())
            self.register_buffer(f"table{i}", q)
            self.register_buffer(f"scale{i}", s)
            column = 1 if query and m.sides == 2 else 0
            if m.token_weight is not None:
                self.register_buffer(f"score{i}", m.token_weight.weight.detach()[:, column].clone())
                self.register_buffer(f"pos{i}", m.pos_score.detach().clone())
        self.weighted = members[0].token_weight is not None
        self.register_buffer("projection", None if projection is None else
                             torch.from_numpy(np.ascontiguousarray(projection, np.float32)))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != 0
        outs = []
        for i in range(self.k):
            if self.weighted:
                score = getattr(self, f"score{i}")[ids] + getattr(self, f"pos{i}")[: ids.shape[1]]
                w = score.masked_fill(~mask, -1e4).softmax(-1) * mask
            else:
                w = mask / mask.sum(1, keepdim=True).clamp(min=1)
            rows = getattr(self, f"table{i}")[ids].float() * getattr(self, f"scale{i}")[ids][..., None]
            outs.append(F.normalize((rows * w[..., None]).sum(1), dim=-1, eps=1e-6))
        out = torch.cat(outs, -1) / math.sqrt(self.k)
        return out if self.projection is None else out @ self.projection


def side_module(encoder: nn.Module, query: bool, int8: bool, projection: np.ndarray | None = None) -> nn.Module:
    """The module exported for one side: the int8 bag path where possible, else the float encoder."""
    members = bag_members(encoder)
    if int8 and members is not None:
        return CompactBagEncoder(members, query, projection).eval()
    if projection is not None:
        raise DlmError("a projection needs a bag encoder (int8 path)")
    return SideEncoder(encoder, query).eval()


def export_side(module: nn.Module, path, max_len: int, output_names=("sentence_embedding",)) -> Path:
    example = torch.randint(1, 100, (2, min(16, max_len)))
    batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("length", min=2, max=max_len)
    return onnx_export(module, (example,), path, ["input_ids"], list(output_names), ({0: batch, 1: length},))


@torch.no_grad()
def embed_with(module: nn.Module, ids: np.ndarray, batch_size: int = 512) -> np.ndarray:
    out = [module(torch.from_numpy(trim(ids[s:s + batch_size]))).numpy() for s in range(0, len(ids), batch_size)]
    return np.concatenate(out).astype(np.float32)


def top_directions(emb: np.ndarray, dims: int) -> np.ndarray:
    """(D, dims): the top eigenvectors of the documents' uncentred second moment E[d d^T]."""
    vals, vecs = np.linalg.eigh((emb.T.astype(np.float64) @ emb) / len(emb))
    return vecs[:, ::-1][:, :dims].astype(np.float32)


def build_flat_index(emb: np.ndarray, kind: str):
    """An exhaustive inner-product index over every document: kind is a FAISS factory string, "Flat" (float32),
    "SQ8" / "SQ4" (8 or 4 bits per dimension), "PQ<m>" (m sub-vectors of 8 bits)."""
    index = faiss.index_factory(emb.shape[1], kind, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(emb)
    index.add(emb)
    return index


def index_megabytes(n: int, dim: int, kind: str) -> float:
    per = {"Flat": 4 * dim, "SQ8": dim, "SQ4": dim / 2}.get(kind) or int(kind.removeprefix("PQ"))
    return round(n * per / 1e6, 1)


def dequantized(m: BagEncoder) -> torch.Tensor:
    q, scale = quantize_rows(m.tok.weight.detach())
    return q.float() * scale[:, None]


@torch.no_grad()
def bag_embeddings(members: list[BagEncoder], ids: np.ndarray, query: bool, int8: bool,
                   batch_size: int = 1024) -> np.ndarray:
    """What CompactBagEncoder (int8) or the float encoder computes, through embedding_bag (no (B, T, dim)
    tensor): the same numbers, several times faster for 54k documents."""
    tables = [dequantized(m) if int8 else m.tok.weight.detach() for m in members]
    out = []
    for s in range(0, len(ids), batch_size):
        chunk = torch.from_numpy(trim(ids[s:s + batch_size]))
        parts = [F.normalize(F.embedding_bag(chunk, t, per_sample_weights=m.weights(chunk, query), mode="sum",
                                             padding_idx=0), dim=-1, eps=1e-6) for m, t in zip(members, tables)]
        out.append((torch.cat(parts, -1) / math.sqrt(len(members))).numpy())
    return np.concatenate(out).astype(np.float32)


def text_embeddings(lr, texts: list[str], int8: bool, query: bool = False) -> np.ndarray:
    """Texts embedded as documents (or queries) exactly as the exported graph of that side would."""
    ids = encode(lr.tokenizer, texts, lr.cfg.max_query_len if query else lr.cfg.max_doc_len)
    members = bag_members(lr.encoder)
    if members is not None:
        return bag_embeddings(members, ids, query=query, int8=int8)
    return embed_with(side_module(lr.encoder, query=query, int8=int8), ids)


def document_embeddings(lr, docs: list[dict], int8: bool) -> np.ndarray:
    return text_embeddings(lr, [d["text"] for d in docs], int8)


def compact_encoders(lr, dims: int, int8: bool, docs: list[dict], doc_emb: np.ndarray | None = None):
    """(query module, document embeddings) for one serving option; doc_emb: the unprojected document
    embeddings of that table precision, when already computed."""
    emb = document_embeddings(lr, docs, int8) if doc_emb is None else doc_emb
    projection = top_directions(emb, dims) if dims else None
    if projection is not None:
        emb = emb @ projection
    return side_module(lr.encoder, query=True, int8=int8, projection=projection), emb


def score_option(query_module, index, lr, ds, split: str) -> dict:
    queries, rel = ds.queries(split)
    q = embed_with(query_module, encode(lr.tokenizer, queries, lr.cfg.max_query_len))
    _, ids = index.search(q, 100)
    return rank_metrics(first_ranks(ids, rel))


def compact_options(run_path, split: str = "val",
                    options=((0, False, "Flat"), (0, True, "SQ8"), (0, True, "SQ4"), (0, True, "PQ1152"),
                             (0, True, "PQ576"), (1024, True, "SQ8"))) -> list[dict]:
    """nDCG@10 and index size of each serving option (dims, int8 tables, index kind) on `split`."""
    lr = load_run(run_path)
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    rows, doc_emb = [], {}
    for dims, int8, kind in options:
        if int8 not in doc_emb:  # one pass over the corpus per table precision
            doc_emb[int8] = document_embeddings(lr, ds.docs, int8)
        q_mod, emb = compact_encoders(lr, dims, int8, ds.docs, doc_emb[int8])
        index = build_flat_index(emb, kind)
        m = score_option(q_mod, index, lr, ds, split)
        table_mb = sum(b.numel() * b.element_size() for b in q_mod.buffers()) / 1e6 if int8 else \
            sum(p.numel() * 4 for p in lr.encoder.parameters()) / 1e6
        row = {"dims": dims or emb.shape[1], "int8_tables": int8, "index": kind, "split": split,
               "ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"], "graph_mb": round(table_mb, 1),
               "index_mb": index_megabytes(*emb.shape, kind)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def doc_store(docs: list[dict], description_chars: int = 0) -> str:
    """One JSON line per document, in index order: id, section, synopsis (and the description's start)."""
    rows = [{"id": d["id"], "section": d.get("section", ""), "synopsis": d.get("synopsis", "")} for d in docs]
    if description_chars:
        for r, d in zip(rows, docs):
            r["description"] = d["text"][:description_chars]
    return "".join(json.dumps(r) + "\n" for r in rows)


def drift_sample(val_queries: list[str], n: int) -> list[str]:
    """Up to n validation queries; a small corpus subset (tiny/quick presets) repeats its few up to the
    contract's minimum, and says so."""
    n = max(min(n, len(val_queries)), MIN_DRIFT_ROWS)
    if len(val_queries) >= n:
        return val_queries[:n]
    print(f"note: only {len(val_queries)} validation queries; the drift reference repeats them to {n} rows",
          flush=True)
    return (val_queries * math.ceil(n / len(val_queries)))[:n]


def run_export(run_path, dims: int = 0, int8: bool = True, index_kind: str = "SQ4", version: str | None = None,
               name: str = BUNDLE_NAME, overwrite: bool = False, n_drift: int = 1000,
               description_chars: int = 0) -> dict:
    """The run (one encoder or an ensemble) as a package-search bundle; its test metrics are measured on
    the exported graph and index themselves, so the README's number is the served model's."""
    lr = load_run(run_path)
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    q_mod, emb = compact_encoders(lr, dims, int8, ds.docs)
    index = build_flat_index(emb, index_kind)
    test = score_option(q_mod, index, lr, ds, "test")
    val_queries, _ = ds.queries("val")
    ref_ids = encode(lr.tokenizer, val_queries[:16], lr.cfg.max_query_len)
    with tempfile.TemporaryDirectory(prefix="p06-export-") as tmp:
        tmp = Path(tmp)
        export_side(q_mod, tmp / "query.onnx", max(lr.cfg.max_doc_len, lr.cfg.max_query_len))
        faiss.write_index(index, str(tmp / "index.faiss"))
        (tmp / "docs.jsonl").write_text(doc_store(ds.docs, description_chars))
        metrics = {"split": "test", "headline": "ndcg@10",
                   "values": {**{k: test[k] for k in ("ndcg@10", "recall@10", "mrr@10", "recall@100")},
                              "queries": len(ds.queries("test")[0]), "documents": len(ds.docs)}}
        bundle = save_bundle(
            name, version or lr.version, task="text-retrieval", graphs={"query": tmp / "query.onnx"},
            preprocess=text_preprocess("input_ids", lr.cfg.max_query_len, truncate=True, min_length=2),
            postprocess={"type": "knn", "graph": "query", "output": "sentence_embedding", "index": "index.faiss",
                         "documents": "docs.jsonl", "metric": "inner_product", "default_k": 10, "max_k": 100,
                         "int8_tables": bool(int8), "index_type": index_kind,
                         "dims": int(emb.shape[1])},
            reference=torch_reference(q_mod, "query", {"input_ids": ref_ids}, ["sentence_embedding"]),
            metrics=metrics,
            provenance=provenance("p06_contrastive", lr.path, "debian-packages", lr.cfg.split_seed, lr.cfg.seed,
                                  vars(lr.cfg)),
            drift_inputs=drift_sample(val_queries, n_drift),
            files={"tokenizer.json": lr.path / "tokenizer.json", "index.faiss": tmp / "index.faiss",
                   "docs.jsonl": tmp / "docs.jsonl"}, overwrite=overwrite)
    size = bundle_size(bundle.path)
    print(f"bundle: {bundle.path} ({size / 1e6:.0f} MB; test nDCG@10 {test['ndcg@10']:.4f} "
          f"R@10 {test['recall@10']:.4f} on the exported graph and index)", flush=True)
    return {"bundle": str(bundle.path), "size_bytes": size, "test": test}
