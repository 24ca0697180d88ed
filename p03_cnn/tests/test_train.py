import dataclasses

from p03_cnn.config import PRESETS
from p03_cnn.train import WeightEMA, lr_at, train

TINY = dataclasses.replace(PRESETS["tiny"], device="cpu", baseline=False)


def test_overfits_128_images(tmp_path):
    # 40 epochs: at 25 the last epoch was 0.984-1.0 depending on seed, precision (bf16 autocast or float32) and
    # thread count; at 40 it is 1.0 in both precisions on seeds 0 and 1
    cfg = dataclasses.replace(TINY, train_subset=128, eval_subset=128, width=16, epochs=40, batch_size=32,
                              augment=False, label_smoothing=0.0, weight_decay=0.0, lr=0.05)
    train(cfg, run_dir=tmp_path / "run", final_eval=False)
    from dlm_core.runs import RunDir

    rows = RunDir(tmp_path / "run").metrics()
    assert rows[-1]["train_acc"] >= 0.99  # clean accuracy on the 128 training images


def test_short_run_beats_logistic_regression(tmp_path):
    # 12 epochs: at 4 the CNN and the baseline were within 0.1 point of each other (0.818-0.825 vs 0.819), in
    # float32 and in bf16 autocast; at 12 both precisions give 0.838-0.839 (~30 s)
    cfg = dataclasses.replace(TINY, train_subset=3000, eval_subset=1000, width=16, epochs=12, batch_size=32,
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


def test_weight_ema_follows_its_formula():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEMA(model, decay=0.9)
    before = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.add_(2.0)
        model[1].num_batches_tracked.add_(5)
    ema.update(step=100)  # d = min(0.9, 101/110) = 0.9
    now = {k: v.clone() for k, v in ema.model.state_dict().items()}
    raw = model.state_dict()
    for k, v in before.items():
        if v.is_floating_point():
            assert torch.allclose(now[k], 0.9 * v + 0.1 * raw[k]), k
        else:
            assert torch.equal(now[k], raw[k]), k
    ema.update(step=0)  # early steps average over a short window: d = 1/10
    assert torch.allclose(ema.model[0].weight, 0.1 * now["0.weight"] + 0.9 * model[0].weight)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_the_ema_weights_are_checkpointed_tested_and_exported(tmp_path, monkeypatch):
    import torch

    from dlm_core.bundle import load_bundle
    from dlm_core.checkpoint import Checkpointer
    from dlm_core.runs import RunDir
    from p03_cnn.evaluate import load_run
    from p03_cnn.export import export_run

    monkeypatch.setenv("DLM_ARTIFACTS", str(tmp_path / "artifacts"))
    path = tmp_path / "run"
    train(dataclasses.replace(TINY, epochs=2, ema=0.99, val_variants=True), run_dir=path)
    row = RunDir(path).metrics()[-1]
    assert {"val_acc_raw", "val_acc_raw_tta", "val_acc_ema", "val_acc_ema_tta"} <= row.keys()
    assert row["val_acc"] == row["val_acc_ema_tta"]  # what is validated: the average, flip-averaged
    best = Checkpointer(path / "checkpoints").best()
    raw, avg = best["model"], best["ema"]
    assert raw.keys() == avg.keys()
    assert any(not torch.allclose(raw[k], avg[k]) for k in raw if raw[k].is_floating_point())
    model, _, _ = load_run(path)
    assert all(torch.equal(v, avg[k]) for k, v in model.state_dict().items())
    bundle = load_bundle(export_run(path, name="fashion-cnn", version="ema", n_reference=8, n_drift=500)["bundle"])
    weights = torch.load(bundle.file("weights.pt"), weights_only=True)
    assert all(torch.equal(v, avg[k]) for k, v in weights.items())


def test_the_default_validates_raw_weights_with_flip_averaging(tmp_path):
    from dlm_core.runs import RunDir

    assert PRESETS["default"].ema == 0 and PRESETS["default"].tta_flip  # chosen on val (README)
    assert PRESETS["quick"].ema == 0 and not PRESETS["quick"].tta_flip
    train(dataclasses.replace(TINY, val_variants=True), run_dir=tmp_path / "run", final_eval=False)
    row = RunDir(tmp_path / "run").metrics()[-1]
    assert {"val_acc_raw", "val_acc_raw_tta"} <= row.keys() and "val_acc_ema" not in row
    assert row["val_acc"] == row["val_acc_raw_tta"]
