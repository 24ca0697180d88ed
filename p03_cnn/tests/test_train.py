import dataclasses

from p03_cnn.config import PRESETS
from p03_cnn.train import lr_at, train

TINY = dataclasses.replace(PRESETS["tiny"], device="cpu", baseline=False)


def test_overfits_128_images(tmp_path):
    cfg = dataclasses.replace(TINY, train_subset=128, eval_subset=128, width=16, epochs=25, batch_size=32,
                              augment=False, label_smoothing=0.0, weight_decay=0.0, lr=0.05)
    train(cfg, run_dir=tmp_path / "run", final_eval=False)
    from dlm_core.runs import RunDir

    rows = RunDir(tmp_path / "run").metrics()
    assert rows[-1]["train_acc"] >= 0.99  # clean accuracy on the 128 training images


def test_short_run_beats_logistic_regression(tmp_path):
    cfg = dataclasses.replace(TINY, train_subset=3000, eval_subset=1000, width=16, epochs=4, batch_size=32,
                              optimizer="adamw", lr=3e-3, weight_decay=0.01, augment=False, baseline=True,
                              baseline_iters=100)
    res = train(cfg, run_dir=tmp_path / "run")
    assert res["test_acc"] > res["baseline_logreg_test_acc"] > 0.6, res


def test_seeded_runs_are_identical(tiny_run, tmp_path):
    from dlm_core.runs import RunDir

    path, _ = tiny_run
    train(dataclasses.replace(PRESETS["tiny"], epochs=2, device="cpu"), run_dir=tmp_path / "again")
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in RunDir(path).metrics()]
    again = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
             for r in RunDir(tmp_path / "again").metrics()]
    assert strip == again and len(strip) == 2


def test_onecycle_schedule_shape():
    cfg = dataclasses.replace(TINY, lr=1.0, warmup=0.25)
    lrs = [lr_at(cfg, s, 100) for s in range(101)]
    assert abs(lrs[0] - 1 / 25) < 1e-9 and abs(max(lrs) - 1.0) < 1e-9 and lrs.index(max(lrs)) == 25
    assert lrs[-1] < 1e-3 and all(a >= b for a, b in zip(lrs[25:], lrs[26:]))
