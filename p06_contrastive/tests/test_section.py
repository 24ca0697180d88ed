"""The section classifier: the torch-free n-gram features equal scikit-learn's on real descriptions; a small
model learns sections well past the majority class on held-out packages; its bundle answers exactly as torch,
through the CLI too; the bootstrap interval is the paired one; text with no known n-gram is refused."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from p06_contrastive.config import SectionConfig
    from p06_contrastive.section import section_data

    cfg = SectionConfig(word_features=8000, char_features=8000, dim=32, hidden=64, epochs=8, max_train=4000,
                        batch_size=32, tfidf_cs=(10.0,))
    texts, y, labels = section_data(max_train=cfg.max_train)
    keep = np.random.default_rng(0).choice(len(y["test"]), 500, replace=False)
    texts["test"], y["test"] = [texts["test"][i] for i in keep], y["test"][keep]
    return cfg, texts, y, labels


@pytest.mark.parametrize("position_features", [0, 3000])
def test_ngram_features_equal_scikit_learn(small, position_features):
    """With position blocks too: the first / last paragraph's word n-grams, columns after the whole text's."""
    import dataclasses

    from dlm_core.predictors.ngrams import NgramFeaturizer
    from p06_contrastive.section import fit_vectorizers, ngram_spec, transform

    cfg, texts, _, _ = small
    cfg = dataclasses.replace(cfg, position_features=position_features)
    vecs = fit_vectorizers(texts["train"][:2000], cfg)
    spec = ngram_spec(vecs)
    assert [b["field"] for b in spec["blocks"]] == ["all", "all"] + ["first", "last"] * bool(position_features)
    feat = NgramFeaturizer(spec)
    odd = ["C++ bindings for the   X11\tprotocol -- libxcb", "a", "Ünïcödé façade für Bücher!", "x y z",
           "\n\nFirst Paragraph of Tools\n \nmiddle one\nThis package contains the development files.\n", "\n"]
    probe = texts["val"][:300] + odd
    want = transform(vecs, probe)
    for i, text in enumerate(probe):
        ids, weights, oov = feat.row(text)
        row = want[i]
        got = dict(zip(ids.tolist(), weights.tolist()))
        assert set(got) == set(row.indices.tolist()), text
        assert np.allclose([got[j] for j in row.indices], row.data, atol=1e-6), text
        assert 0 <= oov <= 1


def test_the_model_learns_and_its_bundle_answers_as_torch(small, tmp_path):
    from dlm_core.predictors import BadInput, NgramTextClassifier, load_predictor
    from p06_contrastive.section import (
        export_bundle,
        fit_one_vs_rest,
        fit_section_model,
        log_prior,
        mix,
        predict_proba,
        scores,
    )

    cfg, texts, y, labels = small
    vecs, model, choice, x = fit_section_model(texts, y, labels, cfg, log=lambda *a: None)
    proba = predict_proba(model, x["test"])
    test = scores(y["test"], proba.argmax(1))
    majority = float((y["test"] == np.bincount(y["train"]).argmax()).mean())
    assert test["accuracy"] > majority + 0.35, (test, majority)  # ~0.6 vs 0.13 on 4,000 packages
    assert 1 <= choice["epoch"] <= cfg.epochs
    prov = {"project": "p06_contrastive", "run_dir": "", "git_commit": "x", "dataset": "debian-packages",
            "split_seed": 0, "seed": 0, "config": {}}
    metrics = {"split": "test", "headline": "accuracy", "values": test}
    bundle = export_bundle(vecs, model, labels, texts["val"], metrics, prov, "section", "t", False, root=tmp_path)
    pred = load_predictor(bundle.path)
    assert isinstance(pred, NgramTextClassifier) and pred.self_check() <= 1e-4
    got = pred.predict(texts["test"][:200])
    assert [r["prediction"] for r in got] == [labels[i] for i in proba[:200].argmax(1)]
    assert np.allclose([r["confidence"] for r in got], proba[:200].max(1), atol=1e-4)
    seed = pred.predict(["sample text"])[0]  # the seed's example request
    assert seed["prediction"] in labels and 0 < seed["confidence"] <= 1
    for bad in ("", "   ", "\u2603\u2603", 42):
        with pytest.raises(BadInput):
            pred.prepare(bad)
    # with a linear part (one-vs-rest LRs over every column, as served), the bundle serves the averaged
    # probabilities; their sigmoids normalised are what scikit-learn's OneVsRestClassifier answers
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    linear = fit_one_vs_rest(x["train"], y["train"], 10.0, len(labels))
    linear.share = 0.5
    ovr = OneVsRestClassifier(LogisticRegression(C=10.0, solver="liblinear")).fit(x["train"], y["train"])
    want = np.zeros((len(y["test"]), len(labels)))
    want[:, ovr.classes_] = ovr.predict_proba(x["test"])
    assert np.allclose(linear.proba(x["test"]), want, atol=1e-5)
    mixed = mix(proba, linear.proba(x["test"]), 0.5)
    # ... and with a prior shift, the softmax of (log of those probabilities - shift)
    shift = 0.5 * log_prior(y["train"], len(labels))
    shifted = np.exp(np.log(mixed) - shift)
    shifted /= shifted.sum(1, keepdims=True)
    assert (shifted.argmax(1) != mixed.argmax(1)).any()  # the shift changes some answers
    bundle = export_bundle(vecs, model, labels, texts["val"], metrics, prov, "section", "mix", False, root=tmp_path,
                           linear=linear, shift=shift)
    pred = load_predictor(bundle.path)
    assert pred.self_check() <= 1e-4
    got = pred.predict(texts["test"][:200])
    assert [r["prediction"] for r in got] == [labels[i] for i in shifted[:200].argmax(1)]
    assert np.allclose([r["confidence"] for r in got], shifted[:200].max(1), atol=1e-4)


def test_prior_shift_is_chosen_when_the_model_leans_to_frequent_classes():
    from p06_contrastive.section import choose_prior_shift, log_prior, scores

    rng = np.random.default_rng(0)
    y = rng.choice(4, 4000, p=[0.7, 0.2, 0.07, 0.03])
    prior = log_prior(y, 4)
    signal = np.eye(4)[y] * 1.5 + rng.normal(0, 1, (4000, 4))
    leaning = signal + 1.0 * prior  # a model trained on these labels adds the prior to its evidence
    choice = choose_prior_shift(leaning, y, prior)
    assert choice["tau"] >= 0.5
    shifted = scores(y, (leaning - choice["tau"] * prior).argmax(1))
    assert shifted["macro_f1"] > scores(y, leaning.argmax(1))["macro_f1"] + 0.05
    assert choose_prior_shift(signal, y, np.log(np.full(4, 0.25)))["tau"] == 0.0  # a flat prior: nothing to shift


def test_paired_bootstrap_interval_excludes_zero_only_for_a_real_gain():
    from p06_contrastive.section import paired_bootstrap

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 2000)
    base = np.where(rng.random(2000) < 0.70, y, (y + 1) % 5)
    better = np.where(rng.random(2000) < 0.5, y, base)  # fixes about half of base's errors
    same = np.where(rng.random(2000) < 0.70, y, (y + 2) % 5)  # the same error rate on other items
    gain = paired_bootstrap(y, better, base, n=300)
    assert gain["accuracy"]["ci95"][0] > 0.1 and gain["macro_f1"]["ci95"][0] > 0
    tie = paired_bootstrap(y, same, base, n=300)
    assert tie["accuracy"]["ci95"][0] < 0 < tie["accuracy"]["ci95"][1]


def test_group_bootstrap_resamples_whole_groups_and_widens_for_clustered_items():
    from p06_contrastive.section import paired_bootstrap

    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(100), 20)  # 100 sources of 20 near-copies: each model right or wrong on a whole source
    y = rng.integers(0, 4, 100)[groups]
    base = np.where(rng.random(100)[groups] < 0.7, y, (y + 1) % 4)
    other = np.where(rng.random(100)[groups] < 0.7, y, (y + 2) % 4)
    items = paired_bootstrap(y, other, base, n=300)
    whole = paired_bootstrap(y, other, base, n=300, groups=groups)
    assert items["unit"] == "item" and whole["unit"] == "group" and whole["units"] == 100
    assert items["accuracy"]["difference"] == whole["accuracy"]["difference"]
    width = {k: r["accuracy"]["ci95"][1] - r["accuracy"]["ci95"][0] for k, r in (("i", items), ("g", whole))}
    assert width["g"] > 3 * width["i"]  # sqrt(20) ~ 4.5 times wider in theory
    # one group alone: every resample is that group, so the interval is the point itself
    one = paired_bootstrap(y[:20], other[:20], base[:20], n=50, groups=groups[:20])
    assert one["accuracy"]["ci95"][0] == one["accuracy"]["ci95"][1] == one["accuracy"]["difference"]
