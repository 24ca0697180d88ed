"""ONNX export: the torch-free Translator (dlm_core.predictors) over encoder + one cached decoder step decodes
exactly as torch does, greedy and with beam search, on padded batches and single sentences."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dlm_core.bundle import provenance
from dlm_core.predictors import load_predictor
from p05_transformer import data as D
from p05_transformer.decode import greedy, translate_ids
from p05_transformer.export import save_translator


@pytest.fixture(scope="module")
def translator(overfit, pairs32, tmp_path_factory):
    model, tok, ids = overfit
    tmp = tmp_path_factory.mktemp("p05-bundle")
    tok.save(str(tmp / "tokenizer.json"))
    cfg = SimpleNamespace(max_len=40, beam=3, length_alpha=1.0, no_repeat_ngram=3)
    english = [en for en, _ in pairs32]
    path = save_translator(model, tmp / "tokenizer.json", cfg, "overfit", "1",
                           {"split": "test", "headline": "bleu", "values": {"bleu": 0.0}},
                           provenance("p05_transformer", tmp, "bible-en-es", 0, 0, {}),
                           (english * 16)[:500], [s for s, _ in ids[:8]], root=tmp / "artifacts")
    return load_predictor(path)


def test_onnx_greedy_equals_torch_greedy(overfit, translator):
    model, _, ids = overfit
    translator.post["beam"] = 1
    src = [np.asarray(s) for s, _ in ids[:6]]  # a padded batch of different lengths
    want = greedy(model, torch.from_numpy(D.pad([s for s, _ in ids[:6]])), 41)
    assert translator.translate_ids(src) == want == [t[1:-1] for _, t in ids[:6]]
    one = [np.asarray(ids[7][0])]  # batch of one, other length
    assert translator.translate_ids(one) == greedy(model, torch.from_numpy(one[0][None]), 41)


def test_onnx_beam_equals_torch_beam(overfit, translator, pairs32):
    model, tok, ids = overfit
    translator.post["beam"] = 3
    src = [D.encode(tok, en) for en, _ in pairs32] + [D.encode(tok, "God is love and light")]
    want = translate_ids(model, src, 41, beam=3, alpha=1.0, no_repeat_ngram=3)
    assert translator.translate_ids([np.asarray(s) for s in src]) == want


def test_predictor_text_in_text_out_and_refusals(overfit, translator, pairs32):
    from dlm_core.predictors import BadInput

    translator.post["beam"] = 3
    en, es = pairs32[0]
    out = translator.predict([en])[0]
    assert out["translation"] == es.strip() or out["output_tokens"] > 0
    for bad, needle in (("   ", "empty"), ("word " * 60, "at most 40"), (3, "must be a string")):
        with pytest.raises(BadInput, match=needle):
            translator.prepare(bad)
    drift = translator.bundle.npz("drift_reference.npz")
    assert drift["predictions"].shape == (500,) and drift["embeddings"].shape[0] == 500
