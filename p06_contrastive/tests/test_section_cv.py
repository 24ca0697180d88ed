"""Cross-validation of the section classifier (run_section_cv), through its CLI on a small pool of real packages:
every pooled package is scored exactly once, by models that never trained on it or on its source package's
other documents; the pooled scores are the
saved predictions' own; the model learns; a rerun reuses finished folds and recomputes a missing one to the
same predictions; bad arguments are one line and exit 2."""

import json

import numpy as np
import pytest

SMALL = ["--preset", "quick", "--word-features", "3000", "--char-features", "3000", "--dim", "16", "--hidden", "32",
         "--epochs", "2", "--max-pool", "1200", "--folds", "3", "--resamples", "200"]


def test_folds_keep_a_source_together_and_spread_each_section():
    from p06_contrastive.section_cv import fold_assignment

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [300, 150, 60, 9])
    groups = rng.integers(0, 200, len(y))  # ~200 source packages, a few documents each
    fold = fold_assignment(y, groups, 3, seed=0)
    assert set(fold) == {0, 1, 2}
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1  # no source package on both sides of a fold
    for c in range(3):
        share = np.bincount(fold[y == c], minlength=3) / (y == c).sum()
        assert share.min() > 0.2, (c, share)  # each frequent section in every fold
    assert np.array_equal(fold, fold_assignment(y, groups, 3, seed=0))
    assert not np.array_equal(fold, fold_assignment(y, groups, 3, seed=1))


def test_cv_cli_scores_every_package_once_and_resumes(tmp_path, capsys):
    from p06_contrastive.cli import section_cv_main
    from p06_contrastive.section import scores, section_data
    from p06_contrastive.section_cv import pooled_sources, pooled_split

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
    probs = np.load(out / "fold-0.npz")
    fold0 = json.loads((out / "fold-0.json").read_text())
    assert np.array_equal(probs["items"], fold0["items"])
    assert probs["tfidf_logreg_test"].shape == (len(fold0["items"]), probs["prior"].shape[0])
    assert np.allclose(probs["network_val"].sum(1), 1, atol=1e-4)
    sources = pooled_sources(0)
    held = [set(sources[json.loads((out / f"fold-{k}.json").read_text())["items"]]) for k in range(3)]
    assert not (held[0] & held[1] or held[0] & held[2] or held[1] & held[2])  # a source in one fold only
    by_source, by_item = result["bootstrap_model_minus_tfidf"], result["bootstrap_model_minus_tfidf_by_item"]
    assert by_source["unit"] == "group" and by_source["units"] == len(set(sources[pool])) < 1200
    assert by_item["unit"] == "item" and by_item["units"] == 1200
    for metric in ("accuracy", "macro_f1"):
        for b in (by_source, by_item):
            lo, hi = b[metric]["ci95"]
            assert lo <= b[metric]["difference"] <= hi

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
