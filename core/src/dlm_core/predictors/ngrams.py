"""TF-IDF n-gram features without scikit-learn: the text side of an `ngrams` bundle (p06's section classifier).

The bundle's `ngrams.json` holds one block per analyzer (word n-grams, char n-grams inside word boundaries) and
field (the whole text, or only its first or last paragraph), each with its vocabulary (term -> column), idf and
column offset. A text becomes the sparse row that
scikit-learn's TfidfVectorizer(sublinear_tf=True, norm="l2") would give, block by block, as (ids, weights)
pairs: what the graph gathers and sums (an embedding bag). `p06_contrastive` writes the file from fitted
vectorizers, and a test checks this re-implementation against scikit-learn on real descriptions.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np

from ..errors import DlmError

WHITE_SPACES = re.compile(r"\s\s+")
FIELDS = ("all", "first", "last")


def text_field(text: str, field: str = "all") -> str:
    """The part of a text a block reads: all of it, or its first or last non-empty line (a Debian description's
    paragraph: the first usually says what the software is, the last what this package of it holds)."""
    if field == "all":
        return text
    paragraphs = [p for p in text.split("\n") if p.strip()]
    if not paragraphs:
        return ""
    return paragraphs[0] if field == "first" else paragraphs[-1]


def field_lower(text: str, field: str = "all") -> str:
    """scikit-learn's preprocessor for a block of one field (lowercase, as its default preprocessor)."""
    return text_field(text, field).lower()


def word_ngrams(text: str, pattern: re.Pattern, lo: int, hi: int) -> list[str]:
    """scikit-learn's word analyzer: lowercase, tokens by the pattern, then lo..hi-grams joined by a space."""
    tokens = pattern.findall(text.lower())
    grams = list(tokens) if lo == 1 else []
    for n in range(max(lo, 2), min(hi, len(tokens)) + 1):
        grams += [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return grams


def char_wb_ngrams(text: str, lo: int, hi: int) -> list[str]:
    """scikit-learn's char_wb analyzer: each word padded with one space either side, lo..hi-grams inside it
    (a word no longer than n gives itself, once, and no longer grams)."""
    grams = []
    for word in WHITE_SPACES.sub(" ", text.lower()).split():
        w = f" {word} "
        for n in range(lo, hi + 1):
            if len(w) <= n:
                grams.append(w)
                break
            grams += [w[i:i + n] for i in range(len(w) - n + 1)]
    return grams


class NgramFeaturizer:
    def __init__(self, spec: dict):
        self.blocks = []
        for b in spec["blocks"]:
            if b["analyzer"] not in ("word", "char_wb"):
                raise DlmError(f"ngrams.json: unknown analyzer {b['analyzer']!r}; expected word or char_wb")
            if b.get("field", "all") not in FIELDS:
                raise DlmError(f"ngrams.json: unknown field {b['field']!r}; expected one of {', '.join(FIELDS)}")
            self.blocks.append({**b, "pattern": re.compile(b.get("token_pattern", r"(?u)\b\w\w+\b")),
                                "idf": np.asarray(b["idf"], np.float32)})
        self.n_features = spec["n_features"]

    @classmethod
    def from_file(cls, path) -> NgramFeaturizer:
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def grams(self, block: dict, text: str) -> list[str]:
        lo, hi = block["ngram_range"]
        text = text_field(text, block.get("field", "all"))
        if block["analyzer"] == "word":
            return word_ngrams(text, block["pattern"], lo, hi)
        return char_wb_ngrams(text, lo, hi)

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray, float]:
        """(column ids, tf-idf weights) of one text and the share of its words that no block knows."""
        ids, weights, oov = [], [], 0.0
        for b in self.blocks:
            grams = self.grams(b, text)
            counts = Counter(g for g in grams if g in b["vocab"])
            if b["analyzer"] == "word" and b.get("field", "all") == "all":
                words = [g for g in grams if " " not in g]
                oov = sum(g not in b["vocab"] for g in words) / max(len(words), 1)
            cols = np.fromiter((b["vocab"][g] for g in counts), np.int64, len(counts))
            tf = np.fromiter(counts.values(), np.float32, len(counts))
            w = (1.0 + np.log(tf)) * b["idf"][cols] if b["sublinear_tf"] else tf * b["idf"][cols]
            norm = math.sqrt(float(w @ w))
            ids.append(cols + b["offset"])
            weights.append(w / norm if norm > 0 else w)
        return np.concatenate(ids), np.concatenate(weights).astype(np.float32), oov

    @staticmethod
    def pad(rows: list[tuple[np.ndarray, np.ndarray]], min_length: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Rows of different lengths as [B, L] ids and weights; padding is column 0 with weight 0."""
        width = max(max(len(r[0]) for r in rows), min_length)
        ids = np.zeros((len(rows), width), np.int64)
        weights = np.zeros((len(rows), width), np.float32)
        for i, (c, w) in enumerate(rows):
            ids[i, :len(c)], weights[i, :len(w)] = c, w
        return ids, weights
