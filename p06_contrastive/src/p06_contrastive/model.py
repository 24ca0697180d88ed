"""Text encoders with L2-normalised output (a bag of token embeddings, or a small transformer), and InfoNCE.

One encoder embeds both queries and documents (shared weights, a "siamese" bi-encoder). Training pulls a
synopsis towards its own description and pushes it from the other descriptions in the batch.
"""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlm_core.runs import progress

from .data import trim


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), x + mlp(ln(x)); padding keys are masked out."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads) + key_bias  # (b, h, t, t)
        att = self.drop(att.softmax(-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.mlp(self.ln2(x)))


class TextEncoder(nn.Module):
    """ids (B, T) int64 with 0 = padding -> (B, dim) unit vectors (mean of the non-pad token states).

    pool="weighted": a learned weighted mean instead. Each vocabulary entry has one learned score, and a
    text's token weights are the softmax of its tokens' scores, like a learned IDF: rare, telling words
    (package and library names) can outweigh "the", "for", "library".
    """

    def __init__(self, vocab_size: int, dim: int = 128, layers: int = 2, heads: int = 4, ff_mult: int = 2,
                 max_len: int = 64, dropout: float = 0.1, pool: str = "mean"):
        super().__init__()
        if pool not in ("mean", "weighted"):
            raise ValueError(f"pool must be mean or weighted, not {pool!r}")
        self.token_weight = nn.Embedding(vocab_size, 1) if pool == "weighted" else None
        if self.token_weight is not None:
            nn.init.zeros_(self.token_weight.weight)  # starts as the plain mean
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, ff_mult, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    @property
    def out_dim(self) -> int:
        return self.tok.embedding_dim

    def forward(self, ids: torch.Tensor, query: bool = False) -> torch.Tensor:  # one encoder for both sides
        mask = (ids != 0).to(self.tok.weight.dtype)  # (B, T)
        t = ids.shape[1]
        x = self.drop(self.tok(ids) + self.pos(torch.arange(t, device=ids.device))[None])
        key_bias = ((1.0 - mask) * -1e4)[:, None, None, :]  # padding keys get ~zero attention
        for blk in self.blocks:
            x = blk(x, key_bias)
        x = self.ln(x)
        if self.token_weight is None:
            pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        else:  # softmax over the non-pad tokens; "* mask" keeps an all-pad row at zero, as in the mean
            w = self.token_weight(ids)[..., 0].masked_fill(mask == 0, -1e4).softmax(-1) * mask
            pooled = (x * w[..., None]).sum(1)
        return F.normalize(pooled, dim=-1, eps=1e-6)


class BagEncoder(nn.Module):
    """ids (B, T) int64 with 0 = padding -> (B, dim) unit vectors: a weighted sum of token embeddings.

    pool="weighted" (the default): a text's token weights are the softmax, over its non-pad tokens, of a
    learned score per vocabulary entry (a learned IDF: package names outweigh "the", "library") plus a learned
    score per position (the first sentence of a description says what the package is). asymmetric=True:
    queries and documents have a score column each (the token embeddings stay shared), so forward takes
    `query`. pool="mean": the plain mean. Dropout acts on the pooled vector. Training runs the sum as one
    `embedding_bag` (no (B, T, dim) tensor, forward or backward); eval and ONNX export gather and sum, the
    same numbers.
    """

    def __init__(self, vocab_size: int, dim: int = 384, max_len: int = 192, dropout: float = 0.1,
                 pool: str = "weighted", asymmetric: bool = False, lexical_dim: int = 0):
        super().__init__()
        if pool not in ("mean", "weighted"):
            raise ValueError(f"pool must be mean or weighted, not {pool!r}")
        if lexical_dim and pool != "weighted":
            raise ValueError("a lexical channel needs pool='weighted' (its token weights are learned)")
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        nn.init.normal_(self.tok.weight, std=0.02)
        self.sides = 2 if asymmetric else 1
        columns = self.sides * (2 if lexical_dim else 1)  # [doc, (query)] for the embeddings, then for the codes
        self.token_weight = nn.Embedding(vocab_size, columns) if pool == "weighted" else None
        self.pos_score = nn.Parameter(torch.zeros(max_len)) if pool == "weighted" else None
        if self.token_weight is not None:
            nn.init.zeros_(self.token_weight.weight)  # starts as the plain mean
        self.lexical_dim = lexical_dim
        if lexical_dim:  # fixed random +-1/sqrt(R) code per token: code . code = 1, distinct tokens ~ 0
            g = torch.Generator().manual_seed(0)
            codes = (torch.randint(0, 2, (vocab_size, lexical_dim), generator=g) * 2 - 1) / math.sqrt(lexical_dim)
            codes[0] = 0
            self.register_buffer("lex_codes", codes.float())
            self.lex_gain = nn.Parameter(torch.tensor(1.0))
        self.drop = nn.Dropout(dropout)

    def weights(self, ids: torch.Tensor, query: bool = False, lexical: bool = False) -> torch.Tensor:
        """(B, T) pooling weights: zero on padding, summing to one over a text's tokens (all-pad row: zero)."""
        mask = ids != 0
        if self.token_weight is None:
            return mask / mask.sum(1, keepdim=True).clamp(min=1)
        column = (1 if query and self.sides == 2 else 0) + (self.sides if lexical else 0)
        score = self.token_weight(ids)[..., column] + self.pos_score[: ids.shape[1]]
        return score.masked_fill(~mask, -1e4).softmax(-1) * mask

    @property
    def out_dim(self) -> int:  # the embeddings, then the lexical channel
        return self.tok.embedding_dim + self.lexical_dim

    def init_lexical_scores(self, log_idf) -> None:
        """Start the lexical channel's token scores (both sides) at log idf: its weights ~ idf, like TF-IDF."""
        with torch.no_grad():
            self.token_weight.weight[:, self.sides:] = torch.as_tensor(log_idf, dtype=torch.float32)[:, None]

    def _pool(self, ids: torch.Tensor, table: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.embedding_bag(ids, table, per_sample_weights=w.to(table.dtype), mode="sum", padding_idx=0)
        return (F.embedding(ids, table) * w[..., None].to(table.dtype)).sum(1)

    def forward(self, ids: torch.Tensor, query: bool = False) -> torch.Tensor:
        dense = F.normalize(self.drop(self._pool(ids, self.tok.weight, self.weights(ids, query))), dim=-1, eps=1e-6)
        if not self.lexical_dim:
            return dense
        # a lexical channel: the learned-weight bag of fixed token codes, so q . d also counts shared tokens
        lex = F.normalize(self._pool(ids, self.lex_codes, self.weights(ids, query, lexical=True)), dim=-1, eps=1e-6)
        gain = self.lex_gain.abs()
        return torch.cat([dense, gain * lex], -1) / torch.sqrt(1 + gain * gain)


class EncoderEnsemble(nn.Module):
    """K encoders trained independently (same tokenizer, other seeds) used as one: the concatenation of their
    unit vectors / sqrt(K). Still a unit vector, and q . d is the mean of the members' cosine similarities, so
    one FAISS inner-product index searches the score-averaging ensemble."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.sides = getattr(members[0], "sides", 1)

    @property
    def tok(self) -> nn.Embedding:  # the members share the vocabulary
        return self.members[0].tok

    @property
    def out_dim(self) -> int:
        return sum(m.out_dim for m in self.members)

    def forward(self, ids: torch.Tensor, query: bool = False) -> torch.Tensor:
        return torch.cat([m(ids, query=query) for m in self.members], -1) / math.sqrt(len(self.members))


class ContrastiveModel(nn.Module):
    """The encoder plus the learnable log(1/temperature) of InfoNCE."""

    MAX_LOG_SCALE = math.log(100.0)  # temperature >= 0.01

    def __init__(self, encoder: TextEncoder, temperature: float = 0.05, learn_temperature: bool = True):
        super().__init__()
        self.encoder = encoder
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature)

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.log_scale.detach().clamp(max=self.MAX_LOG_SCALE)))

    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.MAX_LOG_SCALE).exp()


def info_nce(q: torch.Tensor, d: torch.Tensor, scale: torch.Tensor | float, symmetric: bool = True) -> torch.Tensor:
    """InfoNCE with in-batch negatives, symmetric or query->document only.

    q: (B, D) query embeddings, d: (B + H, D) document embeddings whose first B rows are the positives
    (row i belongs to query i) and the last H rows extra (hard) negatives. The query->document term is a
    softmax over all B + H documents; the document->query term (symmetric=True) a softmax over the B
    queries, averaged with it. Inputs are unit vectors, so q @ d.T are cosine similarities, multiplied by
    scale = 1 / temperature.
    """
    b = q.shape[0]
    logits = scale * q @ d.T  # (B, B + H)
    labels = torch.arange(b, device=q.device)
    q2d = F.cross_entropy(logits, labels)
    if not symmetric:
        return q2d
    return 0.5 * (q2d + F.cross_entropy(logits[:, :b].T, labels))


def build_encoder(cfg, vocab_size: int, members: int = 1) -> nn.Module:
    """layers 0: a BagEncoder; layers >= 1: a TextEncoder with that many transformer blocks; members > 1: an
    EncoderEnsemble of that many (a run made by run_contrastive_ensemble)."""
    if members > 1:
        return EncoderEnsemble([build_encoder(cfg, vocab_size) for _ in range(members)])
    max_len = max(cfg.max_doc_len, cfg.max_query_len)
    if cfg.layers == 0:
        return BagEncoder(vocab_size, cfg.dim, max_len, cfg.dropout, cfg.pool, cfg.asymmetric, cfg.lexical_dim)
    return TextEncoder(vocab_size, cfg.dim, cfg.layers, cfg.heads, cfg.ff_mult, max_len, cfg.dropout, cfg.pool)


class SideEncoder(nn.Module):
    """encoder(ids) as queries or as documents: one ONNX graph per side."""

    def __init__(self, encoder: nn.Module, query: bool):
        super().__init__()
        self.encoder, self.query = encoder, query

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(ids, query=self.query)


def is_asymmetric(encoder: nn.Module) -> bool:
    return getattr(encoder, "sides", 1) == 2


def encoder_version(encoder: nn.Module) -> str:
    """A short hash of the encoder's weights: an index records it and refuses another encoder."""
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        buf = io.BytesIO()
        buf.write(t.detach().cpu().contiguous().numpy().tobytes())
        h.update(buf.getvalue())
    return h.hexdigest()[:16]


@torch.no_grad()
def embed(encoder: nn.Module, ids, batch_size: int = 512, device="cpu", progress_desc: str | None = None,
          query: bool = False):
    """Encode padded id rows (numpy (N, T)) in batches -> float32 numpy (N, dim); eval mode, no grad.
    query=True: as queries (an asymmetric encoder weighs their tokens with its query column)."""
    was_training = encoder.training
    encoder.eval()
    out = []
    starts = range(0, len(ids), batch_size)
    for s in (progress(starts, desc=progress_desc) if progress_desc else starts):
        chunk = torch.from_numpy(trim(ids[s:s + batch_size])).to(device)
        out.append(encoder(chunk, query=query).float().cpu().numpy())
    encoder.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, encoder.out_dim), dtype=np.float32)
