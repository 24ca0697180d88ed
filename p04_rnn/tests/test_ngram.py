import numpy as np

from p04_rnn.data import load_corpus
from p04_rnn.ngram import KneserNey


def test_distributions_sum_to_one_for_random_contexts():
    text = load_corpus("shakespeare").train[:60000]
    lm = KneserNey(text, order=5)
    rng = np.random.default_rng(0)
    contexts = ["", "q", "the ", "zzzz", "Xq]}!"]
    for _ in range(20):
        i = int(rng.integers(4, len(text)))
        contexts.append(text[i - 4:i])                                       # seen contexts
        contexts.append("".join(rng.choice(lm.vocab, size=int(rng.integers(1, 6)))))  # mostly unseen
    for ctx in contexts:
        dist = lm.distribution(ctx)
        assert np.all(dist > 0), ctx
        assert abs(dist.sum() - 1.0) < 1e-9, (ctx, dist.sum())


def test_higher_order_helps_on_held_out_text():
    corpus = load_corpus("shakespeare")
    train, held = corpus.train[:200000], corpus.val[:5000]
    bpcs = [KneserNey(train, order=k).bpc(held) for k in (1, 3, 5)]
    assert bpcs[0] > bpcs[1] > bpcs[2]
    assert 4.0 < bpcs[0] < 5.5 and bpcs[2] < 3.5   # order 1 = continuation unigram
