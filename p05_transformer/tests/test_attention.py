"""Hand-written attention == torch's, for random shapes with padding and causal masks."""

import pytest
import torch
from torch import nn

from p05_transformer.model import MultiHeadAttention, scaled_dot_product_attention


def _masks(B, Tq, Tk, gen):
    lengths = torch.randint(1, Tk + 1, (B,), generator=gen)
    pad_keep = torch.arange(Tk)[None, :] < lengths[:, None]  # (B, Tk)
    causal = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq)
    return pad_keep, causal


@pytest.mark.parametrize("seed", range(4))
def test_sdpa_equals_torch_with_padding_and_causal_masks(seed):
    gen = torch.Generator().manual_seed(seed)
    B, H, Tq, Tk, K = (int(x) for x in torch.randint(1, 7, (5,), generator=gen))
    Tk = max(Tk, Tq)
    q, k, v = (torch.randn(B, H, t, K, generator=gen, dtype=torch.float64) for t in (Tq, Tk, Tk))
    pad_keep, causal = _masks(B, Tq, Tk, gen)
    keep = pad_keep[:, None, None, :] & causal[None, None]
    keep = keep | (~keep.any(-1, keepdim=True))  # torch gives NaN for all-masked rows: keep every row usable
    ours, w = scaled_dot_product_attention(q, k, v, keep)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.testing.assert_close(ours, ref)
    assert torch.all(w[~keep.expand_as(w)] == 0)  # masked positions get exactly zero weight
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=torch.float64))


@pytest.mark.parametrize("causal", [False, True])
def test_multihead_equals_nn_multiheadattention(causal):
    torch.manual_seed(0)
    B, T, S, d, h = 3, 5, 7, 16, 4
    ours = MultiHeadAttention(d, h).eval()
    ref = nn.MultiheadAttention(d, h, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    query = torch.randn(B, T, d)
    kv = torch.randn(B, T if causal else S, d)
    Tk = kv.size(1)
    pad_keep = torch.arange(Tk)[None, :] < torch.tensor([Tk, 3, 1])[:, None]
    if causal:
        pad_keep[:] = True
    keep = pad_keep[:, None, None, :]
    attn_mask = None
    if causal:
        tri = torch.ones(T, T, dtype=torch.bool).tril()
        keep = keep & tri
        attn_mask = ~tri  # torch: True = not allowed
    ours.keep_weights = True
    out = ours(query, kv, kv, keep)
    ref_out, ref_w = ref(query, kv, kv, key_padding_mask=~pad_keep, attn_mask=attn_mask, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.last_weights, ref_w, atol=1e-6, rtol=1e-5)
    assert torch.all(ours.last_weights[~keep.expand_as(ours.last_weights)] == 0)
