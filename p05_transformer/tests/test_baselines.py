"""Baselines: IBM Model 1 recovers a toy dictionary; the GRU+attention model learns; detokenisation."""

import pytest
import torch

from p05_transformer import data as D
from p05_transformer.baselines import IBMModel1, detok, gru_model


def test_ibm_model1_learns_word_translations_from_cooccurrence():
    pairs = [("the house", "la casa"), ("the book", "el libro"), ("a book", "un libro"), ("a house", "una casa"),
             ("the green house", "la casa verde"), ("a green book", "un libro verde")] * 3
    m = IBMModel1(iterations=15).fit(pairs)
    assert m.best["house"] == "casa" and m.best["book"] == "libro" and m.best["green"] == "verde"
    assert m.translate("green house, unknownword!") == "Verde casa, unknownword!"
    assert detok(["¿", "qué", "?"]) == "¿qué?"


def test_gru_attention_baseline_learns_the_overfit_pairs(overfit, fit):
    _, tok, ids = overfit
    torch.manual_seed(0)
    model = gru_model(tok.get_vocab_size(), d=48, hidden=64)
    src, tgt = torch.from_numpy(D.pad([s for s, _ in ids])), torch.from_numpy(D.pad([t for _, t in ids]))
    losses = fit(model, src, tgt, lr=5e-3, steps=60)
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    out = model.greedy(src[:4], 40)
    assert len(out) == 4 and all(isinstance(t, int) for row in out for t in row)


def test_seed_changes_the_model_not_the_test_split():
    from p05_transformer.config import TransformerConfig

    splits = [D.load_pairs(TransformerConfig(seed=s)) for s in (0, 3)]
    for a, b in zip(*splits):  # train, val, test: identical pairs in the same order
        assert a == b
    assert len(splits[0][2]) == 1000 and not set(splits[0][2]) & set(splits[0][0])


def test_extra_training_verses_leave_val_and_test_untouched():
    from dlm_core.errors import DlmError
    from p05_transformer.config import TransformerConfig

    base = D.load_pairs(TransformerConfig(extra_train_words=0))
    grown = D.load_pairs(TransformerConfig(extra_train_words=25))
    assert grown[1] == base[1] and grown[2] == base[2]  # the same val and test pairs
    assert grown[0][:len(base[0])] == base[0]
    extra = grown[0][len(base[0]):]
    assert len(extra) > 3000 and all(20 < len(en.split()) <= 25 for en, _ in extra)
    held_out = {en for en, _ in base[1] + base[2]}
    assert not any(en in held_out for en, _ in extra)
    with pytest.raises(DlmError, match="extra-train-words"):
        TransformerConfig(extra_train_words=20)
