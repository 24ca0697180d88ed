"""Baselines on the same split: copy the source, and word-by-word translation with IBM Model 1 (EM on the
training pairs, Brown et al. 1993)."""

from __future__ import annotations

import re

import numpy as np

WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def detok(tokens: list[str]) -> str:
    text = " ".join(tokens)
    text = re.sub(r"\s+([,.;:!?)\]”’])", r"\1", text)
    text = re.sub(r"([¿¡(\[“‘])\s+", r"\1", text)
    return text[:1].upper() + text[1:]


def copy_source(sources: list[str]) -> list[str]:
    return list(sources)


class IBMModel1:
    """t(f | e): the probability that English word e (or NULL) produces Spanish word f, learned by EM.
    Translation: each English word becomes its most likely Spanish word (unseen words are copied)."""

    def __init__(self, iterations: int = 8):
        self.iterations = iterations

    def fit(self, pairs: list[tuple[str, str]]) -> IBMModel1:
        e_vocab, f_vocab = {"<null>": 0}, {}
        E, F, pos = [], [], []  # one entry per (f position, e candidate) in every sentence pair
        n_pos = 0
        for en, es in pairs:
            e_ids = [0] + [e_vocab.setdefault(w, len(e_vocab)) for w in words(en)]
            for w in words(es):
                f = f_vocab.setdefault(w, len(f_vocab))
                E += e_ids
                F += [f] * len(e_ids)
                pos += [n_pos] * len(e_ids)
                n_pos += 1
        E, F, pos = np.asarray(E), np.asarray(F), np.asarray(pos)
        keys, pair_id = np.unique(E.astype(np.int64) * len(f_vocab) + F, return_inverse=True)
        pair_e = keys // len(f_vocab)
        t = np.full(len(keys), 1.0 / len(f_vocab))  # uniform start
        for _ in range(self.iterations):
            p = t[pair_id]
            share = p / np.bincount(pos, p, n_pos)[pos]  # E-step: alignment posteriors per f position
            counts = np.bincount(pair_id, share, len(keys))
            t = counts / np.bincount(pair_e, counts, len(e_vocab))[pair_e]  # M-step: normalise per e
        # best f for every e
        order = np.lexsort((-t, pair_e))
        first = np.unique(pair_e[order], return_index=True)[1]
        f_names = np.array(list(f_vocab))
        self.best = {}
        e_names = list(e_vocab)
        for i in first:
            e, f = pair_e[order[i]], keys[order[i]] % len(f_vocab)
            self.best[e_names[e]] = str(f_names[f])
        self.table_size = len(keys)
        return self

    def translate(self, text: str) -> str:
        return detok([self.best.get(w, w) for w in words(text)])  # unknown words are copied
