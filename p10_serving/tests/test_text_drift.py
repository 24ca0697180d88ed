"""Drift for text that catches 10% (item 4 of issue 33): a tenth of a window's rows from another domain (English
Bible verses among Debian package descriptions) must alert in >= 90% of windows, with <= 5% false alarms when
nothing changed. What catches it is the out-of-domain test (drift.OODDetector): the predictor's per-row
`ood_score` (p06's section classifier: normalised predictive entropy + out-of-vocabulary share), its threshold at
the reference's 99th percentile, the window's rate of rows past it tested against the reference's. Small
fixed-seed runs; calibrate_drift.py runs the full version on the real p06 bundle."""

import numpy as np
import pytest

from dlm_core.predictors import BatchOutput
from dlm_core.predictors.text import NgramTextClassifier, ood_scores
from p10_serving import drift
from p10_serving.drift import Detector, DriftMonitor, OODDetector, compare
from p10_serving.tools.calibration import text_calibration

NAMES = NgramTextClassifier.feature_names  # n_chars, n_words, oov_fraction, n_ngrams, ood_score


# ------------------------------------------------------------------------------------------- the score
def test_ood_score_is_normalised_entropy_plus_oov_share():
    probs = np.array([[1.0, 0, 0, 0], [0.25] * 4, [0.5, 0.5, 0, 0]])
    assert np.allclose(ood_scores(probs, np.array([0.0, 0.0, 0.5])), [0.0, 1.0, 0.5 + 0.5], atol=1e-6)
    assert NAMES[:4] == ["n_chars", "n_words", "oov_fraction", "n_ngrams"] and NAMES[-1] == drift.OOD_FEATURE


def test_ood_alarm_rate_threshold_from_the_reference_and_power():
    """The threshold is the reference's 99th percentile; 10% of a 200-row window past it: an alert."""
    rng = np.random.default_rng(0)
    ref = rng.gamma(2, 1, 1000)
    det = OODDetector(ref, 0)
    assert det.threshold == pytest.approx(np.quantile(ref, 0.99)) and det.alarms.alarms == 10
    same = det.tests(rng.gamma(2, 1, (200, 1)))[0]
    assert same["signal"] == "ood" and same["statistic"] == "alarm_rate" and same["p_raw"] > 0.05
    shifted = det.tests(np.concatenate([rng.gamma(2, 1, 180), rng.gamma(2, 1, 20) + 10])[:, None])[0]
    assert shifted["p_raw"] < 1e-4 and shifted["rate"] >= 0.1 and shifted["reference_rate"] == pytest.approx(0.01)


def test_ood_test_only_for_models_with_an_ood_score():
    """Models without the feature keep their tests; with it, the signal `ood` (the monitor builds it once)."""
    rng = np.random.default_rng(0)
    ref = {"features": rng.gamma(2, 1, (400, 5)), "predictions": rng.integers(0, 3, 400).astype(np.float32),
           "embeddings": rng.normal(size=(400, 6))}
    cur = {k: v[:200] for k, v in ref.items()}
    plain = compare({**ref, "features": ref["features"][:, :4]}, {**cur, "features": cur["features"][:, :4]},
                    "class", NAMES[:4], n_classes=3, n_perm=50)
    assert "ood" not in plain["signals"]
    r = compare(ref, cur, "class", NAMES, n_classes=3, n_perm=50)
    assert r["signals"]["ood"] == "ok" and r == Detector(ref, "class", NAMES, n_classes=3, n_perm=50).score(cur)
    # an old bundle (4 features in its reference) served by the new predictor (5 columns): no ood test, no error
    old = compare({**ref, "features": ref["features"][:, :4]}, cur, "class", NAMES[:4], n_classes=3, n_perm=50)
    assert old == plain
    m = DriftMonitor(ref, "class", NAMES, window=200, min_rows=100, n_classes=3, n_perm=50)
    assert m.detector.ood.threshold == pytest.approx(np.quantile(ref["features"][:, 4], 0.99))
    m.update(BatchOutput([{}] * 200, {}, cur["features"], cur["predictions"], cur["embeddings"]))
    assert m.evaluate()["signals"]["ood"] == "ok"


def test_monitors_of_other_bundles_have_no_ood_test(predictors):
    for name in ("img", "anom", "txt", "search"):
        assert DriftMonitor.for_predictor(predictors[name]).detector.ood is None


# ------------------------------------------------------------------------------------------- on real text
class NumpyTextModel:
    """A stand-in for p06's section classifier fitted in seconds, as NumpyImageModel stands in for p03: TF-IDF
    word 1-2-grams of Debian descriptions, a nearest-centroid classifier (softmax over the cosine similarity to
    each section's mean row, temperature 50, chosen on Shakespeare speeches, not Bible verses) whose similarities
    are the embedding; p06's drift features, the ood_score included (dlm_core's ood_scores)."""

    task, prediction_kind, name, version = "text-classification", "class", "numpy-text", "1"
    feature_names = NAMES

    def __init__(self, texts: list[str], y: np.ndarray, n_classes: int):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.post = {"labels": [str(i) for i in range(n_classes)]}
        self.vec = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2), max_features=30_000,
                                   dtype=np.float32).fit(texts)
        self.words = {w for w in self.vec.vocabulary_ if " " not in w}
        self.analyze = self.vec.build_analyzer()
        x = self.vec.transform(texts)
        c = np.stack([np.asarray(x[y == k].mean(0)).ravel() if (y == k).any() else np.zeros(x.shape[1])
                      for k in range(n_classes)])
        self.centroids = (c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)).T.astype(np.float32)

    def prepare(self, item):
        return item

    def run(self, rows) -> BatchOutput:
        x = self.vec.transform(rows)
        sim = np.asarray(x @ self.centroids, np.float32)
        z = 50 * sim
        probs = np.exp(z - z.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        feats = []
        for text, nnz in zip(rows, np.diff(x.indptr)):
            words = [g for g in self.analyze(text) if " " not in g]
            feats.append([len(text), len(text.split()), sum(w not in self.words for w in words) / max(len(words), 1),
                          nnz])
        feats = np.array(feats, np.float32)
        feats = np.concatenate([feats, ood_scores(probs, feats[:, 2])[:, None]], 1)
        return BatchOutput([{}] * len(rows), {}, feats, probs.argmax(1).astype(np.float32), sim)


@pytest.fixture(scope="module")
def section_texts():
    from dlm_core.data import load_dataset

    ds = load_dataset("debian-packages")  # split_seed 0, as p06's bundles
    sections = sorted({d["section"] for d in ds.docs})
    train = np.random.default_rng(0).choice(ds.train, 4000, replace=False)
    one_line = lambda s: " ".join(s.split())  # noqa: E731
    held = [one_line(ds.docs[i]["text"]) for split in (ds.val, ds.test) for i in split]
    bible = load_dataset("bible-en-es")
    verses = [" ".join(en.split()) for en, _ in bible.test]
    return ([ds.docs[i]["text"] for i in train], np.array([sections.index(ds.docs[i]["section"]) for i in train]),
            len(sections), held, verses)


def test_other_domain_text_at_10_percent_is_caught(section_texts):
    """The calibration of calibrate_drift.py, small: 1000 reference descriptions, windows of 200 held-out
    descriptions (60 with no shift: <= 5% alert), 20 with 10% Bible verses (>= 90% alert, from the ood signal)."""
    texts, y, k, held, verses = section_texts
    model = NumpyTextModel(texts, y, k)
    r = text_calibration(model, held, verses, windows=20, null_windows=60, sizes={"domain": [0.1]}, n_perm=200)
    assert r["none"]["windows"] == 60 and r["none"]["alert_rate"] <= 0.05, r["none"]
    row = r["scenarios"]["domain"][0]
    assert row["windows"] == 20 and row["alert_rate"] >= 0.9, row
    assert row["signal_alert_rate"]["ood"] >= 0.9  # caught by the out-of-domain rows, not by chance elsewhere


def test_monitor_of_a_section_bundle_takes_the_ood_column_or_says_why_not(caplog):
    """for_predictor: a bundle whose drift reference holds ood_score gets the test; one exported before the
    predictor had the column (4 features) is served without it, and the log says to re-export."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    ref = {"features": rng.gamma(2, 1, (500, 5)).astype(np.float32),
           "predictions": rng.integers(0, 3, 500).astype(np.float32)}

    def predictor(names):
        arrays = {**ref, "features": ref["features"][:, :len(names)]}
        return SimpleNamespace(feature_names=NAMES, name="section", version="1", bundle=SimpleNamespace(
            npz=lambda f: arrays), manifest={"drift": {"file": "drift_reference.npz", "features": names,
                                                       "prediction": "class"}, "postprocess": {"labels": list("abc")}})

    assert DriftMonitor.for_predictor(predictor(NAMES)).detector.ood is not None
    with caplog.at_level("WARNING"):
        assert DriftMonitor.for_predictor(predictor(NAMES[:4])).detector.ood is None
    assert "re-export" in caplog.text and "ood_score" in caplog.text
