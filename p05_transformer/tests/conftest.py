"""Shared tiny fixtures: a tokenizer and a small transformer overfit on 32 real pairs (trained once)."""

import os

import pytest
import torch
from torch import nn

from dlm_core.data import load_dataset
from p05_transformer import data as D
from p05_transformer.model import PAD, Transformer

# small tensors: one thread is faster, and the 2 cores are often shared (select_device reads DLM_THREADS)
os.environ.setdefault("DLM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pairs32():
    ds = load_dataset("bible-en-es", seed=0)
    short = [p for p in ds.train[:3000] if 4 <= len(p[0].split()) <= 7 and len(p[1].split()) <= 8]
    return short[:32]  # 32 short real pairs


@pytest.fixture(scope="session")
def overfit(pairs32):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = D.train_tokenizer([t for p in pairs32 for t in p], 300)
    ids = D.encode_pairs(tok, pairs32, 40)
    src, tgt = torch.from_numpy(D.pad([s for s, _ in ids])), torch.from_numpy(D.pad([t for _, t in ids]))
    model = Transformer(tok.get_vocab_size(), d_model=64, heads=4, enc_layers=1, dec_layers=1, d_ff=128,
                        dropout=0.0, max_len=42)
    fit_batch(model, src, tgt, lr=3e-3, steps=400, stop_below=0.01)
    model.eval()
    return model, tok, ids


def fit_batch(model, src, tgt, lr: float, steps: int, stop_below: float = 0.0) -> list[float]:
    """Teacher-forced full-batch AdamW on (src, tgt) id tensors; returns the loss of every step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    losses = []
    for _ in range(steps):
        logits = model(src, tgt[:, :-1])
        loss = loss_fn(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] < stop_below:
            break
    return losses


@pytest.fixture(scope="session")
def fit():
    return fit_batch
