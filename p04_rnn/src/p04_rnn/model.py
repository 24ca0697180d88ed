"""Embedding -> recurrent stack (LSTM / GRU / vanilla RNN) -> linear head over the characters.

HandLSTM is the LSTM written out gate by gate. Its parameters have nn.LSTM's names and layout
(weight_ih_l{k}: (4H, in), weight_hh_l{k}: (4H, H), gates stacked in the order i, f, g, o), so the
state dict of one loads into the other, and a test checks that outputs and gradients agree.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def lstm_cell(x_proj: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight_hh: torch.Tensor,
              bias_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step. x_proj = x @ W_ih^T + b_ih (precomputed for the whole window)."""
    gates = x_proj + h @ weight_hh.t() + bias_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)  # input, forget, output gates in (0, 1)
    g = torch.tanh(g)                                                # candidate cell content in (-1, 1)
    c = f * c + i * g        # keep part of the old memory, write part of the new: the additive path
    h = o * torch.tanh(c)    # expose part of the memory as the output
    return h, c


class HandLSTM(nn.Module):
    """A batch_first multi-layer LSTM from lstm_cell; a drop-in for nn.LSTM(batch_first=True)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.hidden_size, self.num_layers, self.dropout = hidden_size, num_layers, dropout
        for k in range(num_layers):
            n_in = input_size if k == 0 else hidden_size
            setattr(self, f"weight_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size, n_in)))
            setattr(self, f"weight_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size)))
            setattr(self, f"bias_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
            setattr(self, f"bias_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
        bound = 1.0 / math.sqrt(hidden_size)  # nn.LSTM's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, state=None):
        batch, steps, _ = x.shape
        if state is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
            state = (zeros, zeros)
        h0, c0 = state
        hs, cs = [], []
        out = x
        for k in range(self.num_layers):
            if k > 0 and self.dropout > 0 and self.training:
                out = nn.functional.dropout(out, self.dropout, training=True)
            w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
            b_ih, b_hh = getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")
            x_proj = out @ w_ih.t() + b_ih  # the input half of every gate, for all steps at once
            h, c = h0[k], c0[k]
            outputs = []
            for t in range(steps):
                h, c = lstm_cell(x_proj[:, t], h, c, w_hh, b_hh)
                outputs.append(h)
            out = torch.stack(outputs, dim=1)
            hs.append(h)
            cs.append(c)
        return out, (torch.stack(hs), torch.stack(cs))


def make_rnn(cell: str, input_size: int, hidden: int, layers: int, dropout: float) -> nn.Module:
    drop = dropout if layers > 1 else 0.0
    if cell == "lstm":
        return nn.LSTM(input_size, hidden, layers, batch_first=True, dropout=drop)
    if cell == "gru":
        return nn.GRU(input_size, hidden, layers, batch_first=True, dropout=drop)
    if cell == "rnn":
        return nn.RNN(input_size, hidden, layers, batch_first=True, dropout=drop, nonlinearity="tanh")
    if cell == "hand-lstm":
        return HandLSTM(input_size, hidden, layers, dropout=drop)
    raise ValueError(f"unknown cell {cell!r}")


class CharRNN(nn.Module):
    def __init__(self, vocab_size: int, cell: str = "lstm", embed: int = 64, hidden: int = 256, layers: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, embed)
        self.rnn = make_rnn(cell, embed, hidden, layers, dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x: torch.Tensor, state=None):
        """x: (batch, steps) character ids -> logits (batch, steps, vocab), the final recurrent state."""
        out, state = self.rnn(self.embed(x), state)
        return self.head(self.drop(out)), state


def detach_state(state):
    """Cut the graph at the window boundary (truncated BPTT) but keep the values (the carried context)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def params_for(cell: str, vocab: int, embed: int, hidden: int, layers: int) -> int:
    gates = {"lstm": 4, "hand-lstm": 4, "gru": 3, "rnn": 1}[cell]
    rec = sum(gates * (hidden * ((embed if k == 0 else hidden) + hidden) + 2 * hidden) for k in range(layers))
    return vocab * embed + rec + hidden * vocab + vocab


def hidden_for_params(cell: str, target: int, vocab: int, embed: int, layers: int) -> int:
    """The hidden size whose parameter count is closest to `target` (for like-for-like cell comparisons)."""
    return min(range(8, 4097), key=lambda h: abs(params_for(cell, vocab, embed, h, layers) - target))
