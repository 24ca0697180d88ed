"""Learning and decoding: overfit 32 pairs, cached == uncached decoding, beam 1 == greedy, n-gram blocking."""

import torch

from p05_transformer import data as D
from p05_transformer.decode import beam_search, greedy, repeated_ngram_tokens, translate_ids
from p05_transformer.model import EOS, Transformer


def test_tiny_model_overfits_32_pairs_and_translates_them_back(overfit, pairs32):
    model, tok, ids = overfit
    outs = translate_ids(model, [s for s, _ in ids], 41)
    assert [D.decode(tok, o) for o in outs] == [D.decode(tok, t[1:-1]) for _, t in ids]
    assert D.decode(tok, ids[0][1][1:-1]) == pairs32[0][1]  # the tokenizer round-trips the real text


def test_cached_and_uncached_decoding_give_the_same_tokens(overfit):
    model, _, ids = overfit
    src = torch.from_numpy(D.pad([s for s, _ in ids[:8]]))
    assert greedy(model, src, 41, cached=True) == greedy(model, src, 41, cached=False)
    torch.manual_seed(1)  # an untrained model: long, arbitrary outputs exercise every cache position
    rand = Transformer(50, d_model=32, heads=2, enc_layers=2, dec_layers=2, d_ff=64, dropout=0.0, max_len=30).eval()
    rsrc = torch.randint(4, 50, (4, 9))
    rsrc[1, 6:] = 0
    cached = greedy(rand, rsrc, 25, cached=True)
    assert cached == greedy(rand, rsrc, 25, cached=False) and max(len(c) for c in cached) > 10
    for i in range(2):
        one = rsrc[i:i + 1, :(rsrc[i] != 0).sum()]
        assert beam_search(rand, one, 25, beam=3, cached=True) == beam_search(rand, one, 25, beam=3, cached=False)


def test_beam_one_equals_greedy_and_beam_finds_the_overfit_targets(overfit):
    model, _, ids = overfit
    for s, t in ids[:6]:
        src = torch.tensor([s])
        assert beam_search(model, src, 41, beam=1) == greedy(model, src, 41)[0]
        assert beam_search(model, src, 41, beam=4) == t[1:-1]


def _has_repeated_ngram(ids: list[int], n: int) -> bool:
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(grams) != len(set(grams))


class _NeverEnds(Transformer):
    def logits(self, h):
        out = super().logits(h)
        out[..., EOS] = -1e9
        return out


def test_no_repeat_ngram_blocking():
    assert repeated_ngram_tokens([5, 6, 7, 5, 6], 3) == [7]  # "5 6" was followed by 7: 7 would repeat "5 6 7"
    assert repeated_ngram_tokens([5, 6, 5, 6], 2) == [5]
    assert repeated_ngram_tokens([5, 6, 7], 3) == [] and repeated_ngram_tokens([5], 3) == []
    torch.manual_seed(0)  # an untrained model that never ends a sentence loops: its beam outputs repeat bigrams
    rand = _NeverEnds(20, d_model=16, heads=2, enc_layers=1, dec_layers=1, d_ff=32, dropout=0.0, max_len=40).eval()
    srcs = torch.randint(4, 20, (6, 7))
    free = [beam_search(rand, s[None], 30, beam=3, alpha=2.0) for s in srcs]
    blocked = [beam_search(rand, s[None], 30, beam=3, alpha=2.0, no_repeat_ngram=2) for s in srcs]
    assert any(_has_repeated_ngram(f, 2) for f in free)
    assert not any(_has_repeated_ngram(b, 2) for b in blocked)
    assert max(len(b) for b in blocked) > 5
