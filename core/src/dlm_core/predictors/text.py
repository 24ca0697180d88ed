"""Text predictors: the tokenizer file of the bundle (Hugging Face `tokenizers`), then a classifier head
or a query encoder + FAISS index + document store (p06's semantic search); or TF-IDF n-grams (ngrams.py)
into an embedding-bag network (p06's section classifier, `preprocess.type == "ngrams"`)."""

from __future__ import annotations

import json

import numpy as np

from ..errors import DlmError
from .base import BadInput, BatchOutput, Predictor, expect_single_input, softmax_topk, v2_spec
from .ngrams import NgramFeaturizer

MAX_CHARS = 20_000


def as_text(item) -> str:
    if isinstance(item, bytes):
        try:
            item = item.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput("text is not valid UTF-8") from None
    if not isinstance(item, str):
        raise BadInput(f"text must be a string, got {type(item).__name__}")
    if not item.strip():
        raise BadInput("text is empty; send at least one word")
    if len(item) > MAX_CHARS:
        raise BadInput(f"text has {len(item)} characters; at most {MAX_CHARS}")
    return item


class TextPredictor(Predictor):
    feature_names = ["n_chars", "n_tokens", "unk_fraction", "truncated"]

    def __init__(self, bundle, threads: int = 1):
        super().__init__(bundle, threads)
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(bundle.file(self.pre["tokenizer"])))
        unk = getattr(self.tokenizer.model, "unk_token", None)
        self.unk_id = self.tokenizer.token_to_id(unk) if unk else None

    def tokenize(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (truncated to max_tokens) and this text's drift features."""
        ids = self.tokenizer.encode(text, add_special_tokens=self.pre["add_special_tokens"]).ids
        if not ids:
            raise BadInput("text has no tokens after normalisation; send words, not only spaces or symbols")
        if len(ids) > self.pre["max_tokens"] and not self.pre["truncate"]:
            raise BadInput(f"text has {len(ids)} tokens; this model takes at most {self.pre['max_tokens']}")
        kept = ids[: self.pre["max_tokens"]]
        unk = sum(t == self.unk_id for t in kept) / len(kept) if self.unk_id is not None else 0.0
        feats = np.array([len(text), len(ids), unk, float(len(ids) > len(kept))], np.float32)
        return np.asarray(kept, np.int64), feats

    def pad(self, ids: list[np.ndarray]) -> np.ndarray:
        width = max(max(len(r) for r in ids), self.pre.get("min_length", 1))
        out = np.full((len(ids), width), self.pre["pad_id"], np.int64)
        for i, r in enumerate(ids):
            out[i, :len(r)] = r
        return out

    def text_rows_from_v2(self, inputs: dict[str, np.ndarray]) -> list:
        x = expect_single_input(inputs, "text")
        if x.ndim != 1:
            raise BadInput(f"input 'text' has shape {list(x.shape)}; expected [-1] (one string per row)")
        return [self.prepare(t) for t in x.tolist()]

    def example_input(self):
        return "library for parsing JSON documents"


class TextClassifier(TextPredictor):
    task = "text-classification"
    prediction_kind = "class"

    def prepare(self, item):
        return self.tokenize(as_text(item))

    def run(self, rows) -> BatchOutput:
        ids = self.pad([r[0] for r in rows])
        out = self.run_graph(self.post["graph"], {self.pre["graph_input"]: ids})
        probs, top, results = softmax_topk(out[self.post["output"]], self.post["labels"], self.post["top_k"])
        tensors = {"label": np.array([r["prediction"] for r in results], object),
                   "confidence": np.array([r["confidence"] for r in results], np.float32),
                   "probabilities": probs.astype(np.float32)}
        emb = out.get(self.post["embedding_output"]) if self.post["embedding_output"] else None
        return BatchOutput(results, tensors, np.stack([r[1] for r in rows]), top[:, 0].astype(np.float32), emb)

    def rows_from_v2(self, inputs):
        return self.text_rows_from_v2(inputs)

    def v2_inputs(self):
        return [v2_spec("text", "object", [-1])]

    def v2_outputs(self):
        return [v2_spec("label", "object", [-1]), v2_spec("confidence", "float32", [-1]),
                v2_spec("probabilities", "float32", [-1, len(self.post["labels"])])]


def ood_scores(probs: np.ndarray, oov: np.ndarray) -> np.ndarray:
    """Each row's out-of-domain score: the entropy of its predicted class distribution over ln K (0: sure of one
    class, 1: uniform) plus the share of its words outside the vocabulary (0..1). Text from another domain is
    both unknown to the vocabulary and unplaceable for the classifier; each alone misses what the other sees.
    Chosen on Shakespeare vs validation descriptions (p10 README, drift calibration)."""
    p = np.clip(probs.astype(np.float64), 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(1) / np.log(max(p.shape[1], 2))
    return (entropy + oov).astype(np.float32)


class NgramTextClassifier(Predictor):
    """A text -> its TF-IDF n-gram row (ids, weights) -> the graph's embedding bag and MLP -> softmax top-k.
    Drift features: length in characters and words, the share of words outside the vocabulary, how many
    n-gram columns the text hit, and `ood_score` (ood_scores(): normalised predictive entropy + oov_fraction),
    the per-row score whose alarm rate p10's monitor tests (rows past the reference's 99th percentile)."""

    task = "text-classification"
    prediction_kind = "class"
    feature_names = ["n_chars", "n_words", "oov_fraction", "n_ngrams", "ood_score"]

    def __init__(self, bundle, threads: int = 1):
        super().__init__(bundle, threads)
        self.featurizer = NgramFeaturizer.from_file(bundle.file(self.pre["vocabulary"]))

    def prepare(self, item):
        text = as_text(item)
        ids, weights, oov = self.featurizer.row(text)
        if not len(ids):
            raise BadInput("text has no word or character n-gram this model knows; send a description in words")
        feats = np.array([len(text), len(text.split()), oov, len(ids)], np.float32)
        return ids, weights, feats

    def run(self, rows) -> BatchOutput:
        ids, weights = NgramFeaturizer.pad([(r[0], r[1]) for r in rows])
        out = self.run_graph(self.post["graph"], {self.pre["ids_input"]: ids, self.pre["weights_input"]: weights})
        probs, top, results = softmax_topk(out[self.post["output"]], self.post["labels"], self.post["top_k"])
        tensors = {"label": np.array([r["prediction"] for r in results], object),
                   "confidence": np.array([r["confidence"] for r in results], np.float32),
                   "probabilities": probs.astype(np.float32)}
        emb = out.get(self.post["embedding_output"]) if self.post["embedding_output"] else None
        feats = np.stack([r[2] for r in rows])
        feats = np.concatenate([feats, ood_scores(probs, feats[:, 2])[:, None]], 1)
        return BatchOutput(results, tensors, feats, top[:, 0].astype(np.float32), emb)

    # the same v2 view as the tokenizer-based classifier: one string per row in, label/confidence/probabilities out
    rows_from_v2 = TextPredictor.text_rows_from_v2
    example_input = TextPredictor.example_input
    v2_inputs = TextClassifier.v2_inputs
    v2_outputs = TextClassifier.v2_outputs


class TextRetriever(TextPredictor):
    """A query -> its embedding (the bundle's query graph) -> the k nearest documents in the FAISS index."""

    task = "text-retrieval"
    prediction_kind = "top_score"

    def __init__(self, bundle, threads: int = 1):
        super().__init__(bundle, threads)
        import faiss

        faiss.omp_set_num_threads(max(threads, 1))
        self.index = faiss.read_index(str(bundle.file(self.post["index"])))
        with open(bundle.file(self.post["documents"]), encoding="utf-8") as f:
            self.documents = [json.loads(line) for line in f]
        if self.index.ntotal != len(self.documents):
            raise DlmError(f"bundle {bundle.path}: index holds {self.index.ntotal} vectors but the document "
                           f"store {len(self.documents)}")
        if self.post.get("ef_search"):  # HNSW's search breadth, chosen at export
            faiss.ParameterSpace().set_index_parameter(self.index, "efSearch", int(self.post["ef_search"]))

    def prepare(self, item):
        """A query string, or {"query": str, "k": int} (or a string and the body's k: see with_k)."""
        k = self.post["default_k"]
        if isinstance(item, dict):
            unknown = set(item) - {"query", "k"}
            if unknown:
                raise BadInput(f"unknown field(s) {sorted(unknown)}; a query is {{\"query\": str, \"k\": int}}")
            if "query" not in item:
                raise BadInput("missing field 'query'")
            k = item.get("k", k)
            item = item["query"]
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.post["max_k"]:
            raise BadInput(f"k must be an integer in 1..{self.post['max_k']}, got {k!r}")
        ids, feats = self.tokenize(as_text(item))
        return ids, feats, k

    @staticmethod
    def with_k(items: list, k) -> list:
        """The flat body's `k` ({"input": "text", "k": 5}) folded into each query; a query's own k wins."""
        return [{"k": k, **item} if isinstance(item, dict) else {"query": item, "k": k} for item in items]

    def run(self, rows) -> BatchOutput:
        ids = self.pad([r[0] for r in rows])
        emb = self.run_graph(self.post["graph"], {self.pre["graph_input"]: ids})[self.post["output"]]
        k_def = self.post["default_k"]
        kmax = max(max(r[2] for r in rows), k_def)
        scores, idx = self.index.search(np.ascontiguousarray(emb, dtype=np.float32), kmax)
        results = []
        for (_, _, k), s_row, i_row in zip(rows, scores, idx):
            hits = [{"rank": r + 1, "score": float(s), **self.documents[i]}
                    for r, (s, i) in enumerate(zip(s_row[:k], i_row[:k])) if i >= 0]
            results.append({"prediction": hits[0]["id"] if hits else None,
                            "confidence": hits[0]["score"] if hits else None, "results": hits})
        tensors = {"ids": np.array([[self.documents[i]["id"] if i >= 0 else "" for i in row[:k_def]]
                                    for row in idx], object),
                   "scores": scores[:, :k_def].astype(np.float32), "embedding": emb.astype(np.float32)}
        return BatchOutput(results, tensors, np.stack([r[1] for r in rows]), scores[:, 0].astype(np.float32),
                           emb.astype(np.float32))

    def rows_from_v2(self, inputs):
        return self.text_rows_from_v2(inputs)

    def v2_inputs(self):
        return [v2_spec("text", "object", [-1])]

    def v2_outputs(self):
        dim = self.manifest["graphs"][self.post["graph"]]["outputs"][0]["shape"][-1]
        k = self.post["default_k"]
        return [v2_spec("ids", "object", [-1, k]), v2_spec("scores", "float32", [-1, k]),
                v2_spec("embedding", "float32", [-1, dim])]
