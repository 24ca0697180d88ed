"""Cross-validation of the section classifier (run_section_cv), through its CLI on a small pool of real packages:
every pooled package is scored exactly once, by models that never trained on it; the pooled scores are the
saved predictions' own; the model learns; a rerun reuses finished folds and recomputes a missing one to the
same predictions; bad arguments are one line and exit 2."""

import json

import numpy as np
import pytest

SMALL = ["--preset", "quick", "--word-features", "3000", "--char-features", "3000", "--dim", "16", "--hidden", "32",
         "--epochs", "2", "--max-pool", "1200", "--folds", "3", "--resamples", "200"]


def test_folds_are_stratified_and_disjoint():
    from p06_contrastive.section_cv import fold_assignment

    y = np.repeat(np.arange(5), [40, 20, 7, 2, 1])
    fold = fold_assignment(y, 3, seed=0)
    assert set(fold) == {0, 1, 2}
    for c, n in ((0, 40), (1, 20), (2, 7)):
        counts = np.bincount(fold[y == c], minlength=3)
        assert counts.max() - counts.min() <= 1 and counts.sum() == n  # each section spread evenly
    assert np.array_equal(fold, fold_assignment(y, 3, seed=0))
    assert not np.array_equal(fold, fold_assignment(y, 3, seed=1))


def test_cv_cli_scores_every_package_once_and_resumes(tmp_path, capsys):
    from p06_contrastive.cli import section_cv_main
    from p06_contrastive.section import scores, section_data
    from p06_contrastive.section_cv import pooled_split

    out = tmp_path / "cv"
    assert section_cv_main([*SMALL, "--jobs", "2", "--out", str(out)]) == 0
    result = json.loads((out / "section_cv.json").read_text())
    saved = np.load(out / "predictions.npz")
    _, y, _ = section_data(0)
    pool = pooled_split(y, 1200, 0)
    assert result["packages"] == 1200 and np.array_equal(np.sort(saved["items"]), pool)  # each once, no other
    all_y = np.concatenate([y["train"], y["test"]])
    assert np.array_equal(saved["labels"], all_y[saved["items"]])
    for who in ("model", "network", "tfidf_logreg"):
        assert result["scores"][who] == pytest.approx(scores(saved["labels"], saved[who]))
    majority = np.bincount(all_y[pool]).max() / len(pool)
    assert result["scores"]["model"]["accuracy"] > majority + 0.2, (result["scores"], majority)
    for fold in result["per_fold"]:
        assert fold["train_packages"] + fold["held_out"] == 1200
    for metric, b in result["bootstrap_model_minus_tfidf"].items():
        if metric != "resamples":
            lo, hi = b["ci95"]
            assert lo <= b["difference"] <= hi

    # a rerun reuses every fold; a fold whose file is gone is trained again, to the same predictions
    first = json.loads((out / "fold-1.json").read_text())
    (out / "fold-1.json").unlink()
    capsys.readouterr()
    assert section_cv_main([*SMALL, "--jobs", "1", "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "fold 1/3: reused" in log and "fold 3/3: reused" in log and "fold 2/3: reused" not in log
    again = json.loads((out / "fold-1.json").read_text())
    assert again["items"] == first["items"] and again["predictions"] == first["predictions"]
    assert json.loads((out / "section_cv.json").read_text())["scores"] == result["scores"]


@pytest.mark.parametrize("bad", [["--folds", "1"], ["--jobs", "0"], ["--baseline-c", "-1"]])
def test_cv_cli_bad_arguments_are_one_line(bad, tmp_path, capsys):
    from p06_contrastive.cli import section_cv_main

    with pytest.raises(SystemExit) as exit_:
        section_cv_main([*bad, "--out", str(tmp_path / "cv")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert not (tmp_path / "cv").exists()
