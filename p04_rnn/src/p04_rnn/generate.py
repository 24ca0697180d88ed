"""Sampling: temperature, top-k and top-p (nucleus) filtering, one character at a time."""

from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Scale by 1/temperature, then mask (-inf) what top-k and top-p exclude. logits: (vocab,)."""
    logits = logits / temperature
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        probs, order = torch.softmax(logits, -1).sort(descending=True)
        # drop a char when the chars ranked above it already reach top_p (the top one always stays)
        drop = (probs.cumsum(-1) - probs) >= top_p
        logits = logits.clone()
        logits[order[drop]] = float("-inf")
    return logits


@torch.no_grad()
def generate(model, vocab, seed_text: str, length: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, seed: int = 0, device="cpu") -> str:
    """Continue seed_text by `length` characters. Same seed, same text (a private torch.Generator)."""
    model.eval()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.as_tensor(vocab.encode(seed_text), device=device).unsqueeze(0)
    logits, state = model(ids)           # read the whole seed; keep the state
    last = logits[0, -1]
    out = []
    for _ in range(length):
        probs = torch.softmax(filter_logits(last.float().cpu(), temperature, top_k, top_p), -1)
        nxt = int(torch.multinomial(probs, 1, generator=gen))
        out.append(nxt)
        logits, state = model(torch.tensor([[nxt]], device=device), state)
        last = logits[0, -1]
    return seed_text + vocab.decode(out)
