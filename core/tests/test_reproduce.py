"""`dlm reproduce` and `dlm headline`: the real p01 default command through the CLI, resume of a killed step,
skip of a finished project, the quick-vs-default line, and the registry against the tree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlm_core import reproduce as R
from dlm_core.io import read_json, write_json

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def dlm(*args, env=None, timeout=300):
    return subprocess.run([str(BIN / "dlm"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


@pytest.fixture()
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("DLM_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def test_registry_matches_the_tree():
    for p in R.PROJECTS:
        assert (ROOT / p.name / "README.md").is_file()
        names = [s.name for s in p.steps]
        assert set(p.headline_steps) <= set(names) and len(set(names)) == len(names)
        for s in p.steps:
            assert (BIN / s.argv[0]).is_file(), s.argv[0]
            assert s.done_in is None or s.done_in in names


def test_reproduce_p01_writes_the_summary_then_skips_it(results):
    r = dlm("reproduce", "p01_autodiff")
    assert r.returncode == 0, r.stderr
    assert "[1/1] p01_autodiff" in r.stdout and "left in all" in r.stdout
    summary = read_json(results / "summary.json")
    e = summary["projects"]["p01_autodiff"]
    run = next(Path(os.environ["DLM_RUNS"], "reproduce/p01_autodiff/default/p01_autodiff").iterdir())
    res = read_json(run / "results.json")
    assert e["value"] == res["test_accuracy"] and e["baseline"] == res["baseline_logreg_test_accuracy"]
    assert e["beats_baseline"] == (e["value"] > e["baseline"])
    assert e["cpu_minutes"] > 0 and e["wall_minutes"] > 0 and e["commit"] and e["machine"]["cores"] >= 1
    assert e["commands"] == ["run_autodiff_demo"] and e["seeds"] == "0"
    md = (results / "summary.md").read_text()
    assert f"**{e['value']:.4f}**" in md and "p02_optimizers | " in md and "not reproduced yet" in md

    again = dlm("reproduce", "p01")
    assert again.returncode == 0, again.stderr
    assert "done before" in again.stdout and "skipped" in again.stdout and "$ run_autodiff_demo" not in again.stdout
    assert read_json(results / "summary.json") == summary  # untouched


def test_a_killed_trainer_step_continues_with_resume(results, tmp_path):
    # the state a SIGKILL leaves: a run folder with checkpoints and no results.json
    p = R.project("p01_autodiff")
    step_runs = Path(os.environ["DLM_RUNS"], "reproduce/p01_autodiff/default")
    run = step_runs / "p01_autodiff/killed"
    r = subprocess.run([str(BIN / "run_autodiff_demo"), "--epochs", "3", "--run-dir", str(run)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (run / "results.json").unlink()
    assert not R.step_done(p, p.steps[0])

    out = dlm("reproduce", "p01_autodiff")
    assert out.returncode == 0, out.stderr
    assert f"continuing the killed run {run}" in out.stdout and f"--resume {run}" in out.stdout
    e = read_json(results / "summary.json")["projects"]["p01_autodiff"]
    assert e["value"] == read_json(run / "results.json")["test_accuracy"]
    assert read_json(run / "config.json")["epochs"] == 3  # continued with its own config, not restarted


def test_unknown_project_is_one_line_and_exit_2(results):
    r = dlm("reproduce", "p99_nothing")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "p01_autodiff" in r.stderr


def test_quick_line_says_who_wins_and_where_the_default_comes_from(tmp_path):
    rnn, cnn = tmp_path / "rnn", tmp_path / "cnn"
    write_json(rnn / "results.json", {"test_bpc": 2.672, "kn_test_bpc": 2.152})  # lower is better
    write_json(cnn / "results.json", {"test_acc": 0.85, "baseline_logreg_test_acc": 0.83})
    empty = {"projects": {}}
    line = R.quick_line(R.project("p04_rnn"), rnn, 90, empty)
    assert line.startswith("p04_rnn quick (90 s): test bits per char 2.672 vs Kneser-Ney 5-gram 2.152 (LOSES)")
    assert "default (~30 min here, run_rnn_train): test bits per char 1.989 vs Kneser-Ney 5-gram 2.152 (wins; " \
           "p04_rnn/README.md)" in line
    reproduced = {"projects": {"p03_cnn": {"value": 0.93, "baseline": 0.94, "commit": "abc"}}}
    line = R.quick_line(R.project("p03_cnn"), cnn, None, reproduced)
    assert "quick: test accuracy 0.8500 vs logistic regression 0.8300 (wins)" in line
    assert "0.9300 vs logistic regression 0.9400 (LOSES; reproduced here, commit abc)" in line


def test_headline_cli_refuses_a_missing_run(tmp_path):
    r = dlm("headline", "p03_cnn", str(tmp_path / "nope"))
    assert r.returncode == 2 and "not a run folder" in r.stderr


def test_root_readme_table_is_the_generated_one(monkeypatch):
    monkeypatch.setenv("DLM_RESULTS", str(ROOT / "results"))
    table = R.readme_table(R.load_summary())
    assert table in (ROOT / "README.md").read_text(), "README table is stale: paste `dlm reproduce --table`"
    assert json.dumps(R.load_summary())  # the committed summary parses


def test_later_steps_see_earlier_run_folders_and_finish_where_told(results, monkeypatch, capsys):
    write = "import json, sys; json.dump({'score': 0.5, 'base': 0.25}, open(sys.argv[1] + '/b.json', 'w'))"
    fake = R.Project("p00_fake", "a two-step fake", (
        R.Step("a", ("run_autodiff_demo", "--epochs", "1")),
        R.Step("b", ("python", "-c", write, "{a}"), done_file="b.json", done_in="a", resumable=False)),
        R.Metric("score", "score", "b.json"), R.Metric("", "base", "b.json"), "half", ("a",), "split", "0",
        (0.5, 0.25), 0.1)
    monkeypatch.setattr(R, "PROJECTS", (fake,))
    summary = R.reproduce(["p00_fake"])
    e = summary["projects"]["p00_fake"]
    assert e["value"] == 0.5 and e["baseline"] == 0.25 and e["beats_baseline"] is True
    run_a = R.run_dir_of(fake, fake.steps[0])
    assert (run_a / "b.json").is_file() and (run_a / "results.json").is_file()  # step b wrote into a's folder
    assert all(R.step_done(fake, s) for s in fake.steps)
    assert "$ python -c" in capsys.readouterr().out


def test_jobs_run_independent_steps_side_by_side_and_dependents_after(results, monkeypatch):
    stamp = ("import json, os, sys, time; t = time.time(); time.sleep(1.5); json.dump({'start': t, "
             "'end': time.time(), 'score': 0.5, 'base': 0.25, 'artifacts': os.environ['DLM_ARTIFACTS']}, "
             "open(sys.argv[1] + '/r.json', 'w'))")

    def step(name, *argv):
        return R.Step(name, ("python", "-c", stamp, *argv), done_file="r.json", resumable=False)

    fake = R.Project("p00_fake", "three steps", (step("a", "{here}"), step("b", "{here}"), step("c", "{here}", "{a}")),
                     R.Metric("score", "score", "r.json"), R.Metric("", "base", "r.json"), "half", ("a", "b"),
                     "split", "0", (0.5, 0.25), 0.1)
    monkeypatch.setattr(R, "PROJECTS", (fake,))
    e = R.reproduce(["p00_fake"], jobs=3)["projects"]["p00_fake"]
    a, b = (read_json(R.step_dir(fake, s) / "r.json") for s in fake.steps[:2])
    c = read_json(R.step_dir(fake, fake.steps[2]) / "r.json")
    assert a["start"] < b["end"] and b["start"] < a["end"]  # a and b overlapped
    assert c["start"] >= a["end"]  # c's command names a's folder: it waited for a
    assert len({a["artifacts"], b["artifacts"], c["artifacts"]}) == 3  # bundles of same-second runs cannot clash
    assert e["jobs"] == 3 and e["elapsed_minutes"] > 0 and e["value"] == 0.5
    assert all((R.step_dir(fake, s) / "timing.json").is_file() for s in fake.steps)
    assert "side by side" in (results / "summary.md").read_text()


def test_a_failed_step_stops_its_side_by_side_steps_and_both_attempts_are_timed(results, monkeypatch):
    slow = ("import json, sys, time; time.sleep(60); "
            "json.dump({'score': 1, 'base': 0}, open(sys.argv[1] + '/r.json', 'w'))")
    fake = R.Project("p00_fake", "one fails", (
        R.Step("slow", ("python", "-c", slow, "{here}"), done_file="r.json", resumable=False),
        R.Step("bad", ("python", "-c", "import sys; print('bad input'); sys.exit(3)"), done_file="r.json",
               resumable=False)),
        R.Metric("score", "score", "r.json"), R.Metric("", "base", "r.json"), "half", ("slow",), "split", "0",
        (1.0, 0.0), 0.1)
    monkeypatch.setattr(R, "PROJECTS", (fake,))
    with pytest.raises(R.DlmError, match="step bad failed \\(exit 3\\).*\n.*bad input"):
        R.reproduce(["p00_fake"], jobs=2)
    for s in fake.steps:  # both attempts are on record; the slow one was stopped, not waited for
        assert read_json(R.step_dir(fake, s) / "timing.json")["attempts"] == 1
    assert not R.step_done(fake, fake.steps[0])
