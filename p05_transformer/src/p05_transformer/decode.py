"""Decoding: greedy and beam search, each with the key/value cache (one token's work per step) or without it
(the whole prefix recomputed every step: the reference the cache is tested against)."""

from __future__ import annotations

import torch

from .model import BOS, EOS, PAD, Transformer


class CachedStepper:
    """next-token log-probs for a batch of prefixes, reusing past keys/values."""

    def __init__(self, model: Transformer, src):
        self.model, self.memory_keep = model, model.source_keep(src)
        self.cross_k, self.cross_v = model.cross_kv(model.encode(src))
        self.k, self.v = model.empty_cache(src.size(0), src.device)

    def __call__(self, prefix):  # prefix (B, t): only its last token is new
        logp, self.k, self.v = self.model.step(prefix[:, -1:], self.k, self.v, self.cross_k, self.cross_v,
                                               self.memory_keep)
        return logp

    def reorder(self, index):  # beams were reshuffled: follow their parents
        self.k, self.v = self.k[:, index], self.v[:, index]
        self.cross_k, self.cross_v, self.memory_keep = self.cross_k[:, index], self.cross_v[:, index], \
            self.memory_keep[index]


class UncachedStepper:
    """The same log-probs by running the full decoder on the whole prefix each step (O(t) work per step)."""

    def __init__(self, model: Transformer, src):
        self.model, self.src = model, src
        self.memory = model.encode(src)

    def __call__(self, prefix):
        return torch.log_softmax(self.model.decode(prefix, self.memory, self.src)[:, -1], dim=-1)

    def reorder(self, index):
        self.src, self.memory = self.src[index], self.memory[index]


def _stepper(model, src, cached: bool):
    return (CachedStepper if cached else UncachedStepper)(model, src)


@torch.no_grad()
def greedy(model: Transformer, src, max_len: int, cached: bool = True) -> list[list[int]]:
    """Batched greedy decoding; returns token ids per sentence without BOS/EOS."""
    model.eval()
    step = _stepper(model, src, cached)
    prefix = torch.full((src.size(0), 1), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        nxt = step(prefix).argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        prefix = torch.cat([prefix, nxt[:, None]], dim=1)
        done |= nxt == EOS
        if done.all():
            break
    return [_strip(row) for row in prefix[:, 1:].tolist()]


def _strip(ids: list[int]) -> list[int]:
    out = []
    for t in ids:
        if t in (EOS, PAD):
            break
        out.append(t)
    return out


def repeated_ngram_tokens(prefix: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already present in `prefix` (for no-repeat-n-gram blocking)."""
    if n < 1 or len(prefix) < n - 1:
        return []
    tail = tuple(prefix[len(prefix) - n + 1:]) if n > 1 else ()
    return [prefix[i + n - 1] for i in range(len(prefix) - n + 1) if tuple(prefix[i:i + n - 1]) == tail]


@torch.no_grad()
def beam_search(model: Transformer, src, max_len: int, beam: int = 4, alpha: float = 0.6,
                cached: bool = True, no_repeat_ngram: int = 0) -> list[int]:
    """Beam search for ONE source sentence (src (1, S)); finished hypotheses are ranked by
    log p / ((5 + len) / 6) ** alpha (GNMT length normalisation), so short outputs are not favoured.
    no_repeat_ngram=n > 0 forbids any hypothesis to contain the same n subword tokens twice (a guard against
    the degenerate loops a large alpha can reward)."""
    model.eval()
    step = _stepper(model, src, cached)
    prefix = torch.full((1, 1), BOS, dtype=torch.long, device=src.device)
    scores = torch.zeros(1, device=src.device)
    finished: list[tuple[float, list[int]]] = []

    def norm(logp: float, length: int) -> float:
        return logp / (((5 + length) / 6) ** alpha)

    for t in range(max_len):
        logp = step(prefix)  # (n, V)
        if no_repeat_ngram:
            for row, hyp in enumerate(prefix[:, 1:].tolist()):
                banned = repeated_ngram_tokens(hyp, no_repeat_ngram)
                if banned:
                    logp[row, banned] = float("-inf")
        total = (scores[:, None] + logp).view(-1)
        top, idx = total.topk(min(2 * beam, total.numel()))
        parents, tokens = idx // logp.size(1), idx % logp.size(1)
        keep_parent, keep_tok, keep_score = [], [], []
        for rank, (s, p, tok) in enumerate(zip(top.tolist(), parents.tolist(), tokens.tolist())):
            if tok == EOS:
                if rank < beam:  # (fairseq's rule) an EOS only counts among the top `beam` candidates
                    finished.append((norm(s, t + 1), prefix[p, 1:].tolist()))
            elif len(keep_parent) < beam:
                keep_parent.append(p)
                keep_tok.append(tok)
                keep_score.append(s)
        if len(finished) >= beam or not keep_parent:
            break
        index = torch.tensor(keep_parent, device=src.device)
        step.reorder(index)
        prefix = torch.cat([prefix[index], torch.tensor(keep_tok, device=src.device)[:, None]], dim=1)
        scores = torch.tensor(keep_score, device=src.device)
    if not finished:  # ran out of length: take the best open beam
        finished = [(norm(s, max_len), prefix[i, 1:].tolist()) for i, s in enumerate(scores.tolist())]
    return max(finished, key=lambda f: f[0])[1]


def translate_ids(model: Transformer, srcs: list[list[int]], max_len: int, beam: int = 1, alpha: float = 0.6,
                  batch_size: int = 64, cached: bool = True, no_repeat_ngram: int = 0) -> list[list[int]]:
    """Token ids in, token ids out, in input order (greedy in length-sorted batches; beam one by one;
    no_repeat_ngram applies to beam search only)."""
    device = next(model.parameters()).device
    out: list[list[int] | None] = [None] * len(srcs)
    if beam > 1:
        for i, s in enumerate(srcs):
            out[i] = beam_search(model, torch.tensor([s], device=device), max_len, beam, alpha, cached,
                                 no_repeat_ngram)
        return out
    order = sorted(range(len(srcs)), key=lambda i: len(srcs[i]))
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        width = max(len(srcs[i]) for i in idx)
        src = torch.tensor([srcs[i] + [PAD] * (width - len(srcs[i])) for i in idx], device=device)
        for i, ids in zip(idx, greedy(model, src, max_len, cached)):
            out[i] = ids
    return out
