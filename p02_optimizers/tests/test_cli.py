"""The console script: the one-line result, --compare and --sweep outputs, determinism, clear errors (exit 2)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import pytest

from p02_optimizers.cli import main


def _run_dir(out: str) -> Path:
    return Path(out.strip().splitlines()[-1].removeprefix("run: "))


def test_single_run_prints_the_result_line(capsys):
    assert main(["--surface", "rosenbrock", "--optimizer", "sgd", "--steps", "300"]) == 0
    out = capsys.readouterr().out
    line = out.splitlines()[0]
    assert line.startswith("surface: rosenbrock optimizer: sgd final_loss: ") and " steps: 300" in line
    run = _run_dir(out)
    res = json.loads((run / "results.json").read_text())
    assert 0 < res["final_loss"] < 12.5  # started at f(-1.5, 2) = 12.5 and went down
    assert (run / "paths.png").stat().st_size > 1000 and (run / "report.md").exists()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 300


def test_seeded_runs_are_identical(capsys):
    args = ["--surface", "himmelblau", "--optimizer", "momentum", "--steps", "200", "--noise", "0.5", "--seed", "7"]
    outs, metrics = [], []
    for _ in range(2):
        main(args)
        out = capsys.readouterr().out
        outs.append(out.splitlines()[0])
        metrics.append((_run_dir(out) / "metrics.jsonl").read_text())
    assert outs[0] == outs[1] and metrics[0] == metrics[1]
    main(args[:-1] + ["8"])
    assert capsys.readouterr().out.splitlines()[0] != outs[0]


def test_compare_writes_paths_losses_gif_and_table(capsys):
    assert main(["--surface", "himmelblau", "--compare", "sgd,momentum,adam", "--steps", "60", "--frames", "6"]) == 0
    out = capsys.readouterr().out
    assert "| optimizer | lr | final_loss |" in out
    run = _run_dir(out)
    for name in ("paths.png", "loss.png", "paths.gif"):
        assert (run / name).stat().st_size > 1000, name
    assert "![animation](paths.gif)" in (run / "report.md").read_text()
    assert len(imageio.mimread(run / "paths.gif")) >= 6
    rows = list(csv.DictReader(open(run / "compare.csv")))
    assert [r["optimizer"] for r in rows] == ["sgd", "momentum", "adam"]


def test_sweep_writes_csv_and_heatmap(capsys):
    assert main(["--surface", "ravine", "--sweep", "--compare", "sgd,momentum", "--sweep-lrs", "0.001,0.01,0.05",
                 "--steps", "800"]) == 0
    run = _run_dir(capsys.readouterr().out)
    rows = list(csv.DictReader(open(run / "sweep.csv")))
    assert len(rows) == 6
    by = {(r["optimizer"], float(r["lr"])): r for r in rows}
    assert by[("sgd", 0.05)]["diverged_at"] != ""  # lr > 2/condition diverges on the ravine
    assert by[("sgd", 0.01)]["diverged_at"] == "" and float(by[("sgd", 0.01)]["final_loss"]) < 1e-3
    assert (run / "sweep.png").stat().st_size > 1000


@pytest.mark.parametrize("args,needle", [
    (["--steps", "0"], "--steps"),
    (["--lr", "-0.1"], "--lr"),
    (["--surface", "nope"], "--surface"),
    (["--optimizer", "nope"], "--optimizer"),
    (["--compare", "sgd,nope"], "nope"),
    (["--surface", "ravine", "--optimizer", "sgd", "--lr", "0.5"], "loss became"),  # diverges: hint, exit 2
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, args, needle):
    env = {**os.environ, "DLM_RUNS": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "p02_optimizers.cli", *args], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr


@pytest.mark.parametrize("args,needle", [(["--epochs", "0"], "--epochs"), (["--dataset", "cifar"], "--dataset"),
                                         (["--resume", "/nonexistent/run"], "not a run directory")])
def test_landscape_bad_input_is_one_error_line_and_exit_2(tmp_path, args, needle):
    env = {**os.environ, "DLM_RUNS": str(tmp_path)}
    code = "import sys; from p02_optimizers.cli import landscape_main; sys.exit(landscape_main())"
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr


def test_help_is_fast_and_imports_no_torch():
    code = ("import sys; from p02_optimizers import cli; "
            "assert 'torch' not in sys.modules, 'torch imported by cli'; cli.main(['--help'])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "--surface" in p.stdout and "--sweep" in p.stdout
