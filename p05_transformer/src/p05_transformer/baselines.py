"""Baselines on the same split: copy the source, and word-by-word translation with IBM Model 1 (EM on the
training pairs, Brown et al. 1993)."""

from __future__ import annotations

import re
import time

import numpy as np
import torch
from torch import nn

from dlm_core.optim import cosine_decay

from . import data as D

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


# --- GRU encoder-decoder with additive (Bahdanau) attention ------------------------------------------------
def gru_model(vocab_size: int, d: int = 128, hidden: int = 192):
    class GRUAttention(nn.Module):
        """Bidirectional GRU encoder; GRU decoder that scores every source state with
        v^T tanh(W s + U h) (Bahdanau et al. 2015) and feeds the context into its next step."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, d, padding_idx=0)
            self.enc = nn.GRU(d, hidden // 2, batch_first=True, bidirectional=True)
            self.dec = nn.GRUCell(d + hidden, hidden)
            self.W, self.U, self.v = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 1)
            self.proj = nn.Linear(2 * hidden, d)  # then the tied embedding, as in the transformer

        def encode(self, src):
            mem, _ = self.enc(self.embed(src))
            keep = src != 0
            h = (mem * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
            return mem, self.U(mem), keep, h

        def step(self, tok, h, mem, mem_u, keep):
            scores = self.v(torch.tanh(self.W(h)[:, None] + mem_u)).squeeze(-1).masked_fill(~keep, float("-inf"))
            ctx = (torch.softmax(scores, -1)[..., None] * mem).sum(1)
            h = self.dec(torch.cat([self.embed(tok), ctx], -1), h)
            return self.proj(torch.cat([h, ctx], -1)) @ self.embed.weight.t(), h

        def forward(self, src, tgt_in):
            mem, mem_u, keep, h = self.encode(src)
            outs = []
            for t in range(tgt_in.size(1)):
                logit, h = self.step(tgt_in[:, t], h, mem, mem_u, keep)
                outs.append(logit)
            return torch.stack(outs, 1)

        @torch.no_grad()
        def greedy(self, src, max_len: int):
            mem, mem_u, keep, h = self.encode(src)
            tok = torch.full((src.size(0),), 1, dtype=torch.long)
            rows, done = [], torch.zeros(src.size(0), dtype=torch.bool)
            for _ in range(max_len):
                logit, h = self.step(tok, h, mem, mem_u, keep)
                tok = logit.argmax(-1)
                rows.append(torch.where(done, torch.zeros_like(tok), tok))
                done |= tok == 2
                if done.all():
                    break
            out = []
            for r in torch.stack(rows, 1).tolist():
                out.append(r[:r.index(2)] if 2 in r else [t for t in r if t != 0])
            return out

    return GRUAttention()


def train_gru(tok, train_pairs, cfg, minutes: float, seed: int = 0, log=print):
    """Train the GRU baseline on the same tokenizer and split for a budget of CPU minutes (this process's CPU time,
    so a shared machine does not shorten it; with one torch thread, core-minutes like the transformer's
    train_cpu_minutes): AdamW from cfg.lr with cosine decay to 0 over the budget (so it anneals like the
    transformer), label smoothing, clipping."""
    torch.manual_seed(seed)
    ids = D.encode_pairs(tok, train_pairs, cfg.max_len)
    model = gru_model(tok.get_vocab_size())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss(ignore_index=0, label_smoothing=cfg.label_smoothing)
    clock = time.process_time
    t0, epoch = clock(), 0
    while clock() - t0 < minutes * 60:
        epoch += 1
        model.train()
        total = 0.0
        bs = D.batches(ids, cfg.batch_size, seed, epoch)
        for src, tgt in bs:
            src, tgt = torch.from_numpy(src), torch.from_numpy(tgt)
            logits = model(src, tgt[:, :-1])
            loss = loss_fn(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1))
            progress = min(1.0, (clock() - t0) / (minutes * 60))
            for group in opt.param_groups:
                group["lr"] = cosine_decay(progress, cfg.lr)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            total += loss.item()
            if clock() - t0 > minutes * 60:
                break
        log(f"gru epoch: {epoch} train_loss: {total / len(bs):.3f} cpu minutes: {(clock() - t0) / 60:.1f}")
    model.eval()
    return model, epoch, (clock() - t0) / 60
