"""Small seeded runs on the real datasets: it learns what normal looks like, determinism, resume."""

import dataclasses

import numpy as np

from dlm_core.runs import RunDir
from p07_autoencoder.config import AEConfig, base_config
from p07_autoencoder.data import load
from p07_autoencoder.train import fit, run_experiment


def tiny(dataset, **kw):
    base = base_config("quick", dataset)
    return dataclasses.replace(base, **{"max_train": 400, "max_test": 400, "epochs": 2, "width": 8, **kw})


def test_training_data_reconstructs_better_than_clear_anomalies():
    # normal = trousers; other garments (wider shapes) are clear anomalies for a model of trousers
    cfg = tiny("fashion-oneclass", normal_class=1, epochs=3, bottleneck=8, batch_size=32, lr=3e-3)
    r = run_experiment(cfg, plots=False, baselines=False, quiet=True)
    scores = np.load(f"{r['run_dir']}/scores.npz")
    normal, anomal = scores["test"][scores["y_test"] == 0], scores["test"][scores["y_test"] == 1]
    assert scores["val"].mean() < anomal.mean()
    assert normal.mean() < anomal.mean()
    assert r["autoencoder"]["roc_auc"] > 0.85  # 0.968 seen; a mean-image model scores ~0.5


def test_shuttle_seeded_runs_identical_and_resume_matches(tmp_path):
    cfg = tiny("shuttle", epochs=3, batch_size=64)
    a = run_experiment(cfg, run=RunDir.at(tmp_path / "a", cfg), plots=False, baselines=False, quiet=True)
    b = run_experiment(cfg, run=RunDir.at(tmp_path / "b", cfg), plots=False, baselines=False, quiet=True)
    sa, sb = np.load(tmp_path / "a/scores.npz"), np.load(tmp_path / "b/scores.npz")
    assert np.array_equal(sa["test"], sb["test"]) and a["autoencoder"] == b["autoencoder"]
    # stop after 2 epochs, resume to 3: same weights, same losses as the uninterrupted run
    prep = load(cfg)
    short = dataclasses.replace(cfg, epochs=2)
    fit(short, prep, RunDir.at(tmp_path / "c", short), quiet=True)
    run_c = RunDir.at(tmp_path / "c", cfg)
    fit(cfg, prep, run_c, resume=True, quiet=True)
    assert [r["train_loss"] for r in run_c.metrics()] == [r["train_loss"] for r in RunDir(tmp_path / "a").metrics()]


def test_series_windows_and_denoising_run():
    cfg = tiny("ucr-kdd135", denoising=True, epochs=1, max_train=200)
    r = run_experiment(cfg, plots=True, baselines=True, quiet=True)
    assert r["n_test"] == 7501 - 1200 and r["n_val"] == cfg.val_points
    assert 0.0 <= r["autoencoder"]["val_fpr"] <= cfg.fpr + 1 / cfg.val_points
    assert {"isolation_forest", "pca_reconstruction"} <= set(r)


def test_config_rejects_bad_values():
    import pytest

    from dlm_core.errors import DlmError

    for bad in ({"fpr": 0}, {"window": 30}, {"normal_class": 10}, {"dataset": "cifar"}):
        with pytest.raises(DlmError):
            AEConfig(**bad)
