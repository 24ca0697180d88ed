"""The baseline: an interpolated Kneser-Ney character n-gram model (order 5 by default), in plain Python.

    p_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h .)  +  D_k * N1+(h .) / c_k(h .) * p_{k-1}(w | h[1:])

c_k is the raw count at the highest order and the continuation count (how many distinct characters
precede the k-gram) below it; D_k = n1 / (n1 + 2 n2) from the count-of-counts of c_k; the recursion
ends in the uniform distribution over the training vocabulary, so every character gets mass and every
distribution sums to 1. A context never seen at order k falls through to order k-1.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np


class KneserNey:
    def __init__(self, text: str, order: int = 5, vocab: list[str] | None = None):
        self.order = order
        self.vocab = sorted(set(text)) if vocab is None else list(vocab)
        grams = [Counter(text[i:i + k] for i in range(len(text) - k + 1)) for k in range(1, order + 1)]
        self.counts: list[dict[str, int]] = [dict()] * (order + 1)  # counts[k]: k-gram -> c_k
        self.counts[order] = dict(grams[order - 1])
        for k in range(1, order):
            cont: dict[str, int] = defaultdict(int)
            for g in grams[k]:            # every distinct (k+1)-gram type "a w1..wk" adds 1 to "w1..wk"
                cont[g[1:]] += 1
            self.counts[k] = dict(cont)
        self.total = [dict() for _ in range(order + 1)]   # c_k(h .)
        self.types = [dict() for _ in range(order + 1)]   # N1+(h .)
        self.discount = [0.0] * (order + 1)
        for k in range(1, order + 1):
            tot, typ = defaultdict(int), defaultdict(int)
            for g, c in self.counts[k].items():
                tot[g[:-1]] += c
                typ[g[:-1]] += 1
            self.total[k], self.types[k] = dict(tot), dict(typ)
            cc = Counter(self.counts[k].values())
            n1, n2 = cc.get(1, 0), cc.get(2, 0)
            self.discount[k] = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5

    def prob(self, context: str, char: str) -> float:
        """p(char | the last order-1 characters of context)."""
        context = context[-(self.order - 1):] if self.order > 1 else ""
        p = 1.0 / len(self.vocab)
        for k in range(1, len(context) + 2):       # from unigram up to the longest available context
            h = context[len(context) - (k - 1):] if k > 1 else ""
            tot = self.total[k].get(h, 0)
            if tot == 0:                            # unseen context: this order adds nothing
                continue
            d = self.discount[k]
            c = self.counts[k].get(h + char, 0)
            p = max(c - d, 0.0) / tot + d * self.types[k][h] / tot * p
        return p

    def distribution(self, context: str) -> np.ndarray:
        return np.array([self.prob(context, c) for c in self.vocab])

    def bits(self, text: str) -> tuple[float, int]:
        """Total -log2 p of text[1:], each char given the chars before it in `text`; and how many chars."""
        total = 0.0
        for i in range(1, len(text)):
            total -= math.log2(self.prob(text[max(0, i - self.order + 1):i], text[i]))
        return total, len(text) - 1

    def bpc(self, text: str) -> float:
        total, n = self.bits(text)
        return total / n
