"""The debian-packages corpus, the BPE tokenizer trained on its training split, and batching.

Query = a package's one-line synopsis; its one relevant document = the package's long description.
The BPE tokenizer (Hugging Face `tokenizers`) is what serving reuses: tokenizer.json + the max lengths.
"""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from dlm_core.data import load_dataset
from dlm_core.errors import DlmError

PAD, UNK = "[PAD]", "[UNK]"


def load_corpus(split_seed: int = 0, max_corpus: int = 0):
    """The DocumentDataset (full, or a random subset of documents, drawn with split_seed so that runs of other
    --seed see the same documents, with its queries remapped)."""
    ds = load_dataset("debian-packages", seed=split_seed)
    if not max_corpus or max_corpus >= len(ds.docs):
        return ds
    keep = np.sort(np.random.default_rng(split_seed).choice(len(ds.docs), max_corpus, replace=False))
    new_index = np.full(len(ds.docs), -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    for name in ("train", "val", "test"):
        idx = new_index[getattr(ds, name)]
        setattr(ds, name, idx[idx >= 0])
    ds.docs = [ds.docs[i] for i in keep]
    ds.info = {**ds.info, "subset": int(max_corpus), "documents": len(ds.docs)}
    return ds


# --- tokenizer ----------------------------------------------------------------------------------------
def train_tokenizer(texts: list[str], vocab_size: int):
    """A lower-cased byte-pair-encoding tokenizer ([PAD]=0, [UNK]=1) trained on the given texts.

    BPE without a continuing-subword prefix, because it trains deterministically. WordPiece (`##` pieces)
    does not: tokenizers assigns the `##` ids in hash-map order, so ties pick different merges from run to
    run (huggingface/tokenizers#1794).
    """
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK], show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path):
    return Tokenizer.from_file(str(path))


def encode(tok, texts: list[str], max_len: int) -> np.ndarray:
    """Token ids (N, max_len) int64, right-padded with 0 ([PAD]); an empty text gives an all-pad row."""
    out = np.zeros((len(texts), max_len), dtype=np.int64)
    for i, enc in enumerate(tok.encode_batch(list(texts), add_special_tokens=False)):
        ids = enc.ids[:max_len]
        out[i, :len(ids)] = ids
    return out


def check_query(tok, query: str) -> None:
    """Documented behaviour: an empty query or one made only of unknown tokens is refused with a DlmError."""
    if not query or not query.strip():
        raise DlmError("empty query; type a few words, e.g. run_semantic_search \"solar energy\"")
    ids = tok.encode(query, add_special_tokens=False).ids
    unk = tok.token_to_id(UNK)
    if not ids or all(i == unk for i in ids):
        raise DlmError(f"query {query!r} has no token the tokenizer knows (all [UNK]); use English words")


# --- training-only augmentation ----------------------------------------------------------------------
def inverse_cloze(doc_ids: np.ndarray, rng: np.random.Generator, max_query_len: int, span=(4, 12)):
    """Inverse-cloze pseudo-pairs from documents alone: query = a random span of 4-12 tokens of a document,
    positive = the document with that span cut out (so only the shared rest of the text can match them).
    Documents shorter than 2 * the shortest span are paired with themselves (query = their first tokens)."""
    q = np.zeros((len(doc_ids), max_query_len), dtype=np.int64)
    d = np.zeros_like(doc_ids)
    for r, row in enumerate(doc_ids):
        n = int((row != 0).sum())
        if n < 2 * span[0]:
            q[r, :min(n, max_query_len)] = row[:min(n, max_query_len)]
            d[r] = row
            continue
        length = int(rng.integers(span[0], min(span[1], max_query_len, n - span[0]) + 1))
        start = int(rng.integers(0, n - length + 1))
        q[r, :length] = row[start:start + length]
        rest = np.concatenate([row[:start], row[start + length:n]])
        d[r, :len(rest)] = rest
    return q, d


def token_dropout(ids: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Drop each token with probability p (the rest keeps its order, left-aligned); a row keeps >= 1 token."""
    if p <= 0:
        return ids
    keep = (rng.random(ids.shape) >= p) & (ids != 0)
    keep[:, 0] |= ~keep.any(1)  # never empty a row
    out = np.zeros_like(ids)
    for r in range(len(ids)):
        kept = ids[r][keep[r]]
        out[r, :len(kept)] = kept
    return out


def trim(ids: np.ndarray) -> np.ndarray:
    """Drop the padding columns every row of a batch shares (at least one column stays)."""
    used = np.nonzero((ids != 0).any(axis=0))[0]
    return ids[:, : max(1, used[-1] + 1 if len(used) else 1)]
