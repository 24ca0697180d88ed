"""The corpus (bible-en-es from the dlm_core registry), a joint EN+ES BPE tokenizer trained on the training
split only (Hugging Face `tokenizers`), and length-bucketed batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from dlm_core.data import load_dataset
from dlm_core.errors import DlmError
from dlm_core.seed import data_rng

from .model import BOS, EOS, PAD, UNK

SPLIT_SEED = 0  # the fixed train/val/test split of bible-en-es
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]  # ids 0..3, as in model.py


def load_pairs(cfg):
    """(train, val, test) lists of (english, spanish). Train is the split's training pairs, then (optionally) the
    verses of max_words+1 .. extra_train_words English words (never used for val/test), then cut to the first
    cfg.train_limit pairs.
    The split is always the one of SPLIT_SEED: --seed changes the model's initialisation and data order, never
    which pairs are test, so seeds are comparable."""
    ds = load_dataset(cfg.dataset, seed=SPLIT_SEED, max_words=cfg.max_words)
    train = ds.train
    if cfg.extra_train_words > cfg.max_words:  # longer verses: training only, val/test untouched
        wide = load_dataset(cfg.dataset, seed=SPLIT_SEED, max_words=cfg.extra_train_words)
        held_out = {en for en, _ in ds.val + ds.test}
        train = train + [p for p in wide.train + wide.val + wide.test
                         if len(p[0].split()) > cfg.max_words and p[0] not in held_out]
    return (train[:cfg.train_limit] if cfg.train_limit else train), ds.val, ds.test


def train_tokenizer(texts: list[str], vocab_size: int):
    """BPE over Unicode-normalised text with a metaspace pre-tokenizer (spaces survive decoding).
    Characters never seen in training become <unk>."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    if [tok.token_to_id(s) for s in SPECIALS] != [PAD, BOS, EOS, UNK]:
        raise DlmError("tokenizer special ids are not 0..3")
    return tok


def load_tokenizer(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise DlmError(f"{path} not found; a run folder holds tokenizer.json after training")
    return Tokenizer.from_file(str(path))


def encode(tok, text: str) -> list[int]:
    return tok.encode(text).ids


def decode(tok, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=True).strip()


def encode_pairs(tok, pairs, max_len: int):
    """Token id pairs (src, tgt) with tgt framed as BOS ... EOS; pairs longer than max_len are dropped."""
    out = []
    for en, es in pairs:
        s, t = encode(tok, en), encode(tok, es)
        if 0 < len(s) <= max_len and 0 < len(t) <= max_len:
            out.append((s, [BOS] + t + [EOS]))
    return out


def pad(rows: list[list[int]]) -> np.ndarray:
    width = max(len(r) for r in rows)
    arr = np.full((len(rows), width), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        arr[i, :len(r)] = r
    return arr


def batches(pairs, batch_size: int, seed: int, epoch: int):
    """Shuffled batches of similar lengths (less padding); the same order for the same (seed, epoch)."""
    order = data_rng(seed, epoch).permutation(len(pairs))
    chunk = batch_size * 50
    out = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c:c + chunk], key=lambda i: len(pairs[i][1]))
        out += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    perm = data_rng(seed, epoch, 1).permutation(len(out))
    return [(pad([pairs[i][0] for i in out[j]]), pad([pairs[i][1] for i in out[j]])) for j in perm]
