"""The drift monitor: its statistics against known values, the window rules, the server's endpoint and gauges,
and the calibration on real Fashion-MNIST images (item 2 of issue 20): few false alarms when nothing changed,
detection when something did. Small fixed-seed runs; calibrate_drift.py runs the full version."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.stats import ks_2samp, wasserstein_distance

from dlm_core.predictors import BatchOutput
from dlm_core.predictors.image import image_features
from p10_serving import drift
from p10_serving.app import ServeConfig, create_app
from p10_serving.drift import Detector, DriftMonitor, MMDDetector, compare, holm, psi, rbf_mmd_test
from p10_serving.tools import calibration
from p10_serving.tools.calibration import image_calibration

IMAGE = np.random.default_rng(0).integers(0, 256, (28, 28)).tolist()


# ------------------------------------------------------------------------------------------- statistics
def test_holm_adjusts_in_order_and_stays_monotone():
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm([0.2, 0.9]), [0.4, 0.9]) and np.allclose(holm([0.6, 0.7]), [1, 1])


def test_psi_matches_the_formula_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    ref = np.repeat([0.0, 1.0], [50_000, 50_000])     # two bins, 50/50
    cur = np.repeat([0.0, 1.0], [80_000, 20_000])     # 80/20: 0.3 ln 1.6 + 0.3 ln 2.5
    assert psi(ref, cur) == pytest.approx(0.3 * np.log(1.6) + 0.3 * np.log(2.5), rel=1e-3)
    base = rng.normal(size=20_000)
    values = [psi(base, rng.normal(shift, 1, 20_000)) for shift in (0.0, 0.25, 0.5, 1.0)]
    assert values[0] < 0.01 and values == sorted(values) and values[2] > drift.PSI_WARN
    assert values[3] > drift.PSI_ALERT


def test_ks_on_a_large_sample_needs_an_effect_to_alert():
    """The complaint about drift tools: on large samples KS is 'significant' for a trivial difference. A shift
    of 0.08 SD is significant here but below the Wasserstein gate (0.1 SD); 0.3 SD alerts."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5000, 1))
    small = drift.numeric_tests("features", ref, rng.normal(0.08, 1, (50_000, 1)), ["x"])
    ks = [t for t in small if t["statistic"] == "ks"][0]
    assert ks["p_raw"] < drift.ALPHA_ALERT and ks["wasserstein_sd"] < drift.MIN_EFFECT_SD
    r = compare({"features": ref, "predictions": np.zeros(5000)},
                {"features": rng.normal(0.08, 1, (50_000, 1)), "predictions": np.zeros(50_000)}, "score", ["x"])
    assert r["signals"]["features"] == "ok"
    r = compare({"features": ref, "predictions": np.zeros(5000)},
                {"features": rng.normal(0.3, 1, (50_000, 1)), "predictions": np.zeros(50_000)}, "score", ["x"])
    assert r["signals"]["features"] == "alert"


def test_mmd_permutation_test_is_calibrated_and_has_power():
    rng = np.random.default_rng(0)
    null = [rbf_mmd_test(rng.normal(size=(200, 8)), rng.normal(size=(150, 8)), 200, seed=i)["mmd_p"]
            for i in range(30)]
    assert np.mean(np.array(null) < 0.05) <= 0.15 and 0.3 < np.median(null) < 0.7
    shifted = [rbf_mmd_test(rng.normal(size=(200, 8)), rng.normal(0.4, 1, (150, 8)), 200, seed=i)
               for i in range(5)]
    assert all(t["mmd_p"] < 0.01 and t["mmd2"] > 0 for t in shifted)
    # a pure change of direction: the centroid cosine distance sees it
    t = rbf_mmd_test(rng.normal(size=(200, 8)) + [3, 0, 0, 0, 0, 0, 0, 0],
                     rng.normal(size=(150, 8)) + [0, 3, 0, 0, 0, 0, 0, 0], 200)
    assert t["cosine_p"] < 0.01 and t["cosine"] > 0.5


def test_alarm_rate_and_class_mix_tests():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=2000)
    thr = float(np.quantile(ref, 0.99))
    same, more = rng.normal(size=200), np.concatenate([rng.normal(size=180), rng.normal(4, 1, 20)])
    assert drift.alarm_tests(ref, same, thr, True)[0]["p_raw"] > 0.05
    assert drift.alarm_tests(ref, more, thr, True)[0]["p_raw"] < 0.001
    classes = rng.integers(0, 10, 2000)
    skewed = np.where(rng.random(200) < 0.3, 3, rng.integers(0, 10, 200))
    t = drift.class_tests(classes, skewed, 10)[0]
    assert t["p_raw"] < 0.001 and t["js_distance"] > drift.MIN_JS


# ------------------------------------------------------------------------------------------- the monitor
def batch(n: int, rng, shift: float = 0.0) -> BatchOutput:
    return BatchOutput([{}] * n, {}, rng.normal(shift, 1, (n, 3)).astype(np.float32),
                       rng.integers(0, 4, n).astype(np.float32), rng.normal(shift, 1, (n, 5)).astype(np.float32))


def reference(rng, n=600) -> dict:
    b = batch(n, rng)
    return {"features": b.features, "predictions": b.signal, "embeddings": b.embeddings}


def test_monitor_window_rules(tmp_path):
    rng = np.random.default_rng(0)
    m = DriftMonitor(reference(rng), "class", ["a", "b", "c"], window=100, min_rows=60, every=10, n_classes=4,
                     n_perm=100, name="toy", version="1")
    m.update(batch(50, rng))
    r = m.report()
    assert r["verdict"] is None and r["tests"] == [] and r["window_rows"] == 50 and "60" in r["reason"]
    for _ in range(5):
        m.update(batch(30, rng, shift=2.0))
    r = m.report()
    assert r["rows_seen"] == 200 and r["window_rows"] == 100 and r["verdict"] == "alert"
    assert m.rows_in_window - 30 < 100 <= m.rows_in_window  # whole batches kept, at most one beyond the window
    assert {t["signal"] for t in r["tests"]} == {"features", "prediction", "embedding"}
    assert all(t["verdict"] in ("ok", "warn", "alert") and "warn" in t and "alert" in t for t in r["tests"])
    m.update(batch(5, rng))
    assert m.report() is r                       # fewer than `every` new rows: the cached report
    assert m.report(force=True)["rows_seen"] == 205
    path = m.dump(tmp_path / "d")
    z = np.load(path)
    assert z["cur_features"].shape == (100, 3) and z["ref_embeddings"].shape == (600, 5)
    assert list(z["feature_names"]) == ["a", "b", "c"]


def test_monitor_from_a_bundle_takes_its_reference(predictors):
    m = DriftMonitor.for_predictor(predictors["anom"])
    assert m.kind == "score" and m.options["threshold"] == predictors["anom"].post["threshold"]
    assert len(m.ref["predictions"]) == predictors["anom"].manifest["drift"]["rows"]
    assert DriftMonitor.for_predictor(predictors["search"]).kind == "top_score"


# ------------------------------------------------------------------------------------------- the detector (issue #30)
@pytest.fixture(scope="module")
def before():
    """The code before issue #30 (compare() recomputing the reference's share per window), as the bench keeps it."""
    path = Path(__file__).resolve().parents[2] / "bench" / "p10_drift_cost.py"
    spec = importlib.util.spec_from_file_location("p10_drift_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def windows(rng, kind: str, n_ref=700, n=350, dim=12) -> tuple[dict, list[dict]]:
    """A reference and windows (no shift, small, large) of one prediction kind; discrete features too (ties)."""
    def rows(k, shift=0.0):
        pred = rng.integers(0, 5, k) if kind == "class" else rng.gamma(2 + shift, 1, k)
        return {"features": np.stack([rng.normal(shift, 1, k), rng.integers(0, 4, k), rng.random(k) < 0.2 + shift],
                                     1).astype(np.float32),
                "predictions": pred.astype(np.float32),
                "embeddings": np.maximum(rng.normal(shift, 1, (k, dim)), 0).astype(np.float32)}
    return rows(n_ref), [rows(n), rows(n, 0.05), rows(n, 0.4), rows(250), rows(120, 0.4)]


@pytest.mark.parametrize("kind", ["class", "score", "top_score"])
def test_detector_scores_as_compare_and_as_the_code_before(kind, before):
    """One Detector scores every window exactly as compare() (one code path), and as the pooled code of before:
    same verdicts, same p-values and statistics (MMD^2 to float64 rounding)."""
    rng = np.random.default_rng(3)
    ref, wins = windows(rng, kind)
    names = ["x", "level", "flag"]
    opts = {"class": {"n_classes": 5}, "score": {"threshold": 5.0}, "top_score": {}}[kind] | {"n_perm": 200}
    det = Detector(ref, kind, names, window_rows=350, **opts)
    seen = set()
    for cur in wins + [wins[0]]:  # the first again: nothing cached changes a report
        r = det.score(cur)
        assert r == compare(ref, cur, kind, names, **opts)
        old = before.old_compare(ref, cur, kind, names, **opts)
        assert (r["verdict"], r["signals"]) == (old["verdict"], old["signals"])
        for t, o in zip(r["tests"], old["tests"], strict=True):
            assert t.keys() == o.keys() and t["verdict"] == o["verdict"]
            for k, v in t.items():
                assert v == pytest.approx(o[k], rel=1e-9, abs=1e-13) if k == "mmd2" else v == o[k], (t, o)
        seen.add(r["verdict"])
    assert {"ok", "alert"} <= seen  # both kinds of window were there


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_mmd_detector_keeps_float64_p_values_through_ties(before):
    """The permutation sums run in float32 with an error bound, and ties are recomputed in float64: windows of
    repeated rows, constant rows or integer rows, narrow or wide (the Gram route, where the centroid sums'
    float32 candidates are refined in float64 first), give the p-values of the float64 pooled code."""
    rng = np.random.default_rng(0)
    for x, y in [(np.repeat(rng.normal(size=(30, 6)), 10, 0), np.repeat(rng.normal(size=(20, 6)), 10, 0)),
                 (np.ones((200, 6)), np.ones((150, 6))),
                 (rng.integers(0, 2, (200, 6)), rng.integers(0, 2, (150, 6))),
                 (rng.normal(size=(200, 1000)), rng.normal(0.02, 1, (150, 1000))),  # wide: the Gram route
                 (np.repeat(rng.normal(size=(20, 1000)), 10, 0), np.repeat(rng.normal(size=(15, 1000)), 10, 0)),
                 (unit(rng.random((200, 1000)) + 2), unit(rng.random((150, 1000)) + 2))]:  # near-parallel rows
        new, old = rbf_mmd_test(x, y, 200, seed=1), before.old_rbf_mmd_test(x, y, 200, seed=1)
        assert (new["mmd_p"], new["cosine_p"]) == (old["mmd_p"], old["cosine_p"])
        assert new["mmd2"] == pytest.approx(old["mmd2"], abs=1e-12) and new["cosine"] == pytest.approx(old["cosine"])
    d = MMDDetector(rng.normal(size=(400, 5)), n_perm=50, max_rows=300)
    assert d.plan(300) is d.plan(300) and d.test(rng.normal(size=(500, 5)))["rows"] == [300, 300]


def test_ks_and_wasserstein_from_the_sorted_reference_are_scipys():
    rng = np.random.default_rng(0)
    ref = np.sort(rng.normal(size=1000))
    for cur in [rng.normal(0.1, 1, 500), np.round(rng.normal(size=500), 1), np.full(300, 0.5),
                rng.normal(size=2)]:
        for u in (ref, np.round(ref, 1)):
            u = np.sort(u)
            d, p, w = drift.ks_w1_sorted(u, cur)
            ks = ks_2samp(u, cur)
            assert (d, p, w) == (ks.statistic, ks.pvalue, wasserstein_distance(u, cur))
            assert drift.ks_w1_sorted(u, cur) == (d, p, w)  # the memoised p-value


def test_monitor_update_does_no_statistics_and_evaluate_is_cached(monkeypatch):
    """update() only appends; evaluate() is the one computation, kept in last_report, which readers take."""
    rng = np.random.default_rng(0)
    m = DriftMonitor(reference(rng), "class", ["a", "b", "c"], window=100, min_rows=60, every=10, n_classes=4,
                     n_perm=100, name="toy", version="1")
    calls = []
    score = m.detector.score
    monkeypatch.setattr(m.detector, "score", lambda cur: calls.append(1) or score(cur))
    assert m.last_report is None
    placeholder = m.latest()
    assert placeholder["verdict"] is None and placeholder["tests"] == [] and placeholder["computed_at"] is None
    for _ in range(8):
        m.update(batch(30, rng))
    assert calls == [] and m.last_report is None and m.latest()["rows_seen"] == 240
    assert m.latest()["window_rows"] == 100
    r = m.evaluate()
    assert calls == [1] and m.last_report is r and m.latest() is r
    assert r["rows_seen"] == 240 and r["verdict"] in ("ok", "warn", "alert")
    cur, _ = m.current()
    assert {k: r[k] for k in ("tests", "signals", "verdict")} == compare(m.ref, cur, "class", ["a", "b", "c"],
                                                                          **m.options)
    m.update(batch(5, rng))
    assert m.last_report is r and m.report() is r and calls == [1]  # fewer than `every` new rows
    r2 = m.evaluate()
    assert calls == [1, 1] and r2 is not r and m.last_report is r2 and r2["rows_seen"] == 245


# ------------------------------------------------------------------------------------------- the server
def test_drift_endpoint_and_gauges(predictors, tmp_path):
    config = ServeConfig(drift_window=64, drift_min_rows=32, drift_every=1, drift_dir=str(tmp_path))
    with TestClient(create_app([predictors["img"], predictors["txt"]], config)) as c:
        r = c.get("/v1/models/img/drift").json()
        assert r["verdict"] is None and r["rows_seen"] == 0 and r["min_rows"] == 32
        assert 'dlm_drift_verdict{model="img",signal="overall",version="1"} -1.0' in c.get("/metrics").text
        rng = np.random.default_rng(1)  # the reference is uniform noise images: send the same kind
        for _ in range(3):
            images = rng.integers(0, 256, (16, 28, 28)).tolist()
            assert c.post("/v1/models/img/predict", json={"instances": images}).status_code == 200
        # a plain GET reads the last report (computed when the watcher judges a full window, or on demand)
        assert c.get("/v1/models/img/drift").json()["rows_seen"] == 0
        r = c.get("/v1/models/img/drift?fresh=1").json()
        assert r["rows_seen"] == 48 and r["window_rows"] == 48 and r["verdict"] in ("ok", "warn", "alert")
        stats = {(t["signal"], t["statistic"]) for t in r["tests"]}
        assert {("features", "ks"), ("features", "psi"), ("prediction", "chi2"), ("embedding", "mmd")} <= stats
        metrics = c.get("/metrics").text
        assert 'dlm_drift_statistic{feature="brightness",model="img",signal="features",statistic="psi",version="1"}' \
               in metrics
        assert 'dlm_drift_threshold{feature="brightness",level="alert",model="img",signal="features",' \
               'statistic="psi",version="1"} 0.25' in metrics
        assert 'dlm_drift_rows_seen{model="img",version="1"} 48.0' in metrics
        # images nothing like the reference (all black): an alert
        c.post("/v1/models/img/predict", json={"instances": [np.zeros((28, 28)).tolist()] * 64})
        assert c.get("/v1/models/img/drift?fresh=1").json()["verdict"] == "alert"
        dumped = c.get("/v1/models/img/drift?dump=1").json()["dump"]
        assert np.load(dumped)["cur_features"].shape == (64, 6)
        assert c.get("/v1/models/nope/drift").status_code == 404
        assert c.get("/v1/models/txt/drift").json()["rows_seen"] == 0
    with TestClient(create_app([predictors["img"]])) as c:
        r = c.get("/v1/models/img/drift?dump=1")
        assert r.status_code == 400 and "--drift-dir" in r.json()["error"]


# ------------------------------------------------------------------------------------------- calibration
# Two small trained models in numpy stand in for p03 and p07 (a ridge classifier, a PCA reconstruction-error
# detector): a class-mix change or more anomalies only show in a model that learned something.
class NumpyImageModel:
    feature_names = ["brightness", "contrast", "ink_fraction", "center_row", "center_col", "edge_strength"]
    name, version = "numpy", "1"

    def __init__(self, kind: str, x: np.ndarray, y: np.ndarray):
        self.prediction_kind, self.task = kind, "image-classification" if kind == "class" else "anomaly-detection"
        x = x.reshape(len(x), -1) / 255.0
        self.mean = x.mean(0)
        if kind == "class":
            self.post = {"labels": [str(i) for i in range(10)]}
            xc = x - self.mean
            self.w = np.linalg.solve(xc.T @ xc + 10 * np.eye(xc.shape[1]), xc.T @ np.eye(10)[y])
        else:
            self.post = {}
            self.basis = np.linalg.svd(x - self.mean, full_matrices=False)[2][:16].T

    def prepare(self, item):
        return np.asarray(item, np.float32)

    def run(self, rows) -> BatchOutput:
        x = np.stack(rows) / 255.0
        flat = x.reshape(len(x), -1) - self.mean
        if self.prediction_kind == "class":
            emb = flat @ self.w
            signal = emb.argmax(1)
        else:
            emb = flat @ self.basis
            signal = ((flat - emb @ self.basis.T) ** 2).mean(1)
        return BatchOutput([{}] * len(x), {}, image_features(x), signal.astype(np.float32), emb.astype(np.float32))


@pytest.fixture(scope="module")
def fashion():
    from dlm_core.data import load_dataset

    ds = load_dataset("fashion-mnist")
    held = np.concatenate([ds.val.x, ds.test.x]), np.concatenate([ds.val.y, ds.test.y])
    return ds.train.x[:8000], ds.train.y[:8000], held


def check_calibration(result: dict, scenarios: dict):
    assert result["none"]["alert_rate"] <= 0.05, result["none"]
    for name, size in scenarios.items():
        row = [r for r in result["scenarios"][name] if r["size"] == size][0]
        assert row["alert_rate"] >= 0.9, (name, row)


def test_calibration_toy_bundle_on_real_images(predictors, fashion):
    """The bundle's own predictor (an untrained CNN) with a reference built from held-out Fashion-MNIST rows:
    60 windows with no shift, 10 per shift (brightness +20 grey levels, contrast x0.7, rotation 15 degrees)."""
    _, _, (x, y) = fashion
    sizes = {"brightness": [20], "contrast": [0.7], "rotation": [15]}
    r = image_calibration(predictors["img"], x, y, windows=10, null_windows=60, sizes=sizes)
    assert r["none"]["windows"] == 60 and r["scenarios"]["rotation"][0]["windows"] == 10
    check_calibration(r, {"brightness": 20, "contrast": 0.7, "rotation": 15})


def test_calibration_class_mix_with_a_trained_classifier(fashion):
    """One class (T-shirt) 5x more frequent than each other class."""
    xt, yt, (x, y) = fashion
    r = image_calibration(NumpyImageModel("class", xt, yt), x, y, windows=10, null_windows=40,
                          sizes={"class_mix": [5]})
    check_calibration(r, {"class_mix": 5})
    assert r["scenarios"]["class_mix"][0]["signal_alert_rate"]["prediction"] >= 0.9  # seen in the predictions


def test_calibration_anomalies_rising_from_1_to_10_percent(fashion):
    """p07's setting with trousers as the normal class: every other class is an anomaly, 1% of the rows in the
    reference and in the no-shift windows, 10% after the shift. A rate of rare events needs the default
    window (500 rows): at 200 rows, 2 alarms expected against 8, about 80% of windows alert."""
    xt, yt, (x, y) = fashion
    model = NumpyImageModel("score", xt[yt == 1], yt[yt == 1])
    scores = calibration.run(model, x)["predictions"]
    thr = np.quantile(scores[y == 1], 0.99)
    assert np.mean(scores[y != 1] > thr) > 0.5  # the detector flags most anomalies at its 1% threshold
    r = image_calibration(model, x, y, windows=10, null_windows=20, window=500, ref_rows=500,
                          sizes={"anomaly_rate": [0.1]}, normal_class=1)
    check_calibration(r, {"anomaly_rate": 0.1})
    assert r["scenarios"]["anomaly_rate"][0]["signal_alert_rate"]["prediction"] >= 0.9  # the alarm rate rose


def test_chi2_pvalue_is_scipys_chi2_contingency():
    from scipy.stats import chi2_contingency

    from p10_serving.drift import chi2_pvalue

    rng = np.random.default_rng(5)
    tables = [rng.integers(1, 60, (2, k)) for k in (2, 2, 3, 10, 50)] + [np.array([[5, 9], [5, 9]]),
                                                                        np.array([[30, 1], [2, 40]])]
    for t in tables:  # k = 2 takes Yates' correction, like scipy's
        assert chi2_pvalue(t) == chi2_contingency(t).pvalue
