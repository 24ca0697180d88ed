"""An encoder-decoder transformer written from its parts (Vaswani et al. 2017, pre-LayerNorm variant).

Shapes: B batch, S source length, T target length, d model width, h heads, k = d / h.
Masks are boolean with True = "may attend". Decoding uses a key/value cache: the decoder's self-attention
keys/values of past tokens (L, B, h, T, k) and the cross-attention keys/values of the source (L, B, h, S, k),
so that each new token costs one token's work.
"""

from __future__ import annotations

import math

import torch
from torch import nn

PAD, BOS, EOS, UNK = 0, 1, 2, 3


def scaled_dot_product_attention(q, k, v, keep=None, dropout: float = 0.0):
    """softmax(q k^T / sqrt(k_dim)) v. q (..., Tq, k), k/v (..., Tk, k), keep broadcastable to (..., Tq, Tk).

    Returns (output, weights); masked positions get exactly zero weight.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if dropout > 0:
        weights = torch.nn.functional.dropout(weights, dropout)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    """h heads of scaled dot-product attention on learned projections, concatenated and projected back."""

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.d_k, self.dropout = heads, d_model // heads, dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.last_weights = None  # (B, h, Tq, Tk) of the latest call when keep_weights is set
        self.keep_weights = False

    def split(self, x):  # (B, T, d) -> (B, h, T, k)
        return x.view(x.size(0), x.size(1), self.heads, self.d_k).transpose(1, 2)

    def attend(self, q, k, v, keep):
        """q/k/v already split into heads; returns (B, Tq, d)."""
        out, w = scaled_dot_product_attention(q, k, v, keep, self.dropout if self.training else 0.0)
        if self.keep_weights:
            self.last_weights = w.detach()
        return self.out_proj(out.transpose(1, 2).reshape(out.size(0), -1, self.heads * self.d_k))

    def forward(self, query, key, value, keep=None):
        q, k, v = self.split(self.q_proj(query)), self.split(self.k_proj(key)), self.split(self.v_proj(value))
        return self.attend(q, k, v, keep)


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class EncoderLayer(nn.Module):
    def __init__(self, d_model, heads, d_ff, dropout):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, keep):
        h = self.ln1(x)
        x = x + self.drop(self.attn(h, h, h, keep))
        return x + self.drop(self.ff(self.ln2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model, heads, d_ff, dropout):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, y, memory, self_keep, cross_keep):
        h = self.ln1(y)
        y = y + self.drop(self.self_attn(h, h, h, self_keep))
        y = y + self.drop(self.cross_attn(self.ln2(y), memory, memory, cross_keep))
        return y + self.drop(self.ff(self.ln3(y)))

    def step(self, y, past_k, past_v, cross_k, cross_v, cross_keep):
        """One new position y (B, 1, d) with the cached keys/values; returns (y, k, v) with the new k/v appended."""
        a = self.self_attn
        h = self.ln1(y)
        k = torch.cat([past_k, a.split(a.k_proj(h))], dim=2)
        v = torch.cat([past_v, a.split(a.v_proj(h))], dim=2)
        y = y + a.attend(a.split(a.q_proj(h)), k, v, None)  # the past is all visible: no causal mask needed
        c = self.cross_attn
        y = y + c.attend(c.split(c.q_proj(self.ln2(y))), cross_k, cross_v, cross_keep)
        return y + self.ff(self.ln3(y)), k, v


def sinusoid_table(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


class Transformer(nn.Module):
    """Shared (tied) embedding for source, target and the output projection; sinusoidal positions."""

    def __init__(self, vocab_size: int, d_model: int = 192, heads: int = 4, enc_layers: int = 3,
                 dec_layers: int = 3, d_ff: int = 512, dropout: float = 0.1, max_len: int = 64):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, 0, d_model ** -0.5)
        self.register_buffer("pos", sinusoid_table(max_len + 2, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, d_ff, dropout) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, heads, d_ff, dropout) for _ in range(dec_layers))
        self.enc_ln, self.dec_ln = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def embed_at(self, ids, start=0):
        x = self.embed(ids) * math.sqrt(self.d_model)
        return self.drop(x + self.pos[start:start + ids.size(1)])

    def logits(self, h):
        return h @ self.embed.weight.t()  # tied output projection

    @staticmethod
    def source_keep(src):  # (B, 1, 1, S): attend to real source tokens only
        return (src != PAD)[:, None, None, :]

    def encode(self, src):
        keep = self.source_keep(src)
        x = self.embed_at(src)
        for layer in self.encoder:
            x = layer(x, keep)
        return self.enc_ln(x)

    def decode(self, tgt_in, memory, src):
        """Teacher forcing: logits (B, T, V) for every position, with the causal and padding masks."""
        T = tgt_in.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).tril()
        self_keep = causal[None, None] & (tgt_in != PAD)[:, None, None, :]
        self_keep = self_keep | torch.eye(T, dtype=torch.bool, device=tgt_in.device)  # padded rows stay finite
        cross_keep = self.source_keep(src)
        y = self.embed_at(tgt_in)
        for layer in self.decoder:
            y = layer(y, memory, self_keep, cross_keep)
        return self.logits(self.dec_ln(y))

    def forward(self, src, tgt_in):
        return self.decode(tgt_in, self.encode(src), src)

    # --- cached decoding -----------------------------------------------------------------------------
    def cross_kv(self, memory):
        """The source's keys/values for every decoder layer, computed once: two (L, B, h, S, k) tensors."""
        ks = [layer.cross_attn.split(layer.cross_attn.k_proj(memory)) for layer in self.decoder]
        vs = [layer.cross_attn.split(layer.cross_attn.v_proj(memory)) for layer in self.decoder]
        return torch.stack(ks), torch.stack(vs)

    def empty_cache(self, batch: int, device=None):
        a = self.decoder[0].self_attn
        shape = (len(self.decoder), batch, a.heads, 0, a.d_k)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def step(self, token, self_k, self_v, cross_k, cross_v, src_keep):
        """One decoder step: token (B, 1) at position self_k.size(3); returns (log-probs (B, V), self_k, self_v)."""
        y = self.embed_at(token, start=self_k.size(3))
        new_k, new_v = [], []
        for i, layer in enumerate(self.decoder):
            y, k, v = layer.step(y, self_k[i], self_v[i], cross_k[i], cross_v[i], src_keep)
            new_k.append(k)
            new_v.append(v)
        logp = torch.log_softmax(self.logits(self.dec_ln(y[:, -1])), dim=-1)
        return logp, torch.stack(new_k), torch.stack(new_v)

    def set_keep_weights(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, MultiHeadAttention):
                m.keep_weights = on


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(cfg, vocab_size: int) -> Transformer:
    """The Transformer a TransformerConfig describes."""
    return Transformer(vocab_size, cfg.d_model, cfg.heads, cfg.enc_layers, cfg.dec_layers, cfg.d_ff, cfg.dropout,
                       cfg.max_len + 2)
