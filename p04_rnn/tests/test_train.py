import math

import numpy as np
import torch

from p04_rnn.config import RNNConfig
from p04_rnn.data import Vocab, load_corpus, stream_matrix
from p04_rnn.evaluate import evaluate_bits
from p04_rnn.generate import generate
from p04_rnn.model import CharRNN
from p04_rnn.train import lr_at


def test_tiny_model_overfits_200_chars_and_regenerates_them_greedily():
    text = load_corpus("shakespeare").train[5000:5200]
    vocab = Vocab.from_text(text)
    ids = torch.as_tensor(vocab.encode(text)).unsqueeze(0)
    torch.manual_seed(0)
    model = CharRNN(len(vocab), "lstm", 16, 96, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(250):
        logits, _ = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, loss.item()          # nats per char, from ~3.3 at the start
    out = generate(model, vocab, text[:8], len(text) - 8, temperature=1.0, top_k=1)   # top-k 1 = greedy
    assert out == text


def test_bpc_equals_hand_computation_from_logits():
    torch.manual_seed(0)
    text = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    model = CharRNN(len(vocab), "gru", 8, 12, 2).eval()
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(ids[:-1]).unsqueeze(0))
        logp = torch.log_softmax(logits[0].double(), -1)
    by_hand = -sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1)) / math.log(2) / (len(ids) - 1)
    bits, n = evaluate_bits(model, ids, streams=1, chunk=7)       # chunks carry the state across
    assert n == len(ids) - 1
    assert abs(bits / n - by_hand) < 1e-5


def test_streams_are_contiguous_and_targets_shifted():
    ids = np.arange(103)
    m = stream_matrix(ids, 4)
    assert m.shape == (4, 25) and (np.diff(m, axis=1) == 1).all() and m[1, 0] == 25


def test_cosine_schedule():
    cfg = RNNConfig(lr=1e-2, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(5, cfg) == 5e-3 and lr_at(10, cfg) == 1e-2
    assert abs(lr_at(60, cfg) - 5.5e-3) < 1e-12 and abs(lr_at(110, cfg) - 1e-3) < 1e-12


