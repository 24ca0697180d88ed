"""Whole-loop behaviour: determinism, exact resume, terminated vs truncated storage, learning, CLI errors."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from dlm_core.checkpoint import Checkpointer, load_checkpoint
from p09_dqn.config import DQNConfig
from p09_dqn.train import train

LIMIT = 20  # a short time limit: episodes end by truncation as well as by termination

TINY = DQNConfig(total_steps=1500, hidden=[32], batch_size=32, buffer_size=2000, learning_starts=200,
                 exploration_fraction=0.2, eval_every=750, eval_episodes=3, test_episodes=3, checkpoint_every=500,
                 log_every=250, target_every=100, max_episode_steps=LIMIT, early_stop=False, seed=3)


def _episodes(run_dir):
    rows = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl")]
    return [(r["step"], r["episode_return"], r["episode_length"]) for r in rows if "episode_return" in r]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    result = train(TINY, run_dir=run_dir, quiet=True)
    return run_dir, result


def test_same_seed_same_episode_returns(tiny_run, tmp_path):
    run_dir, result = tiny_run
    again = train(TINY, run_dir=tmp_path / "again", quiet=True)
    first, second = _episodes(run_dir), _episodes(tmp_path / "again")
    assert len(first) > 20 and first == second
    assert again["test_mean"] == result["test_mean"]
    losses = lambda d: [json.loads(x).get("td_loss") for x in open(f"{d}/metrics.jsonl")]
    assert losses(run_dir) == losses(tmp_path / "again")


def test_resume_from_checkpoint_equals_uninterrupted(tiny_run, tmp_path):
    run_dir, result = tiny_run
    copy = tmp_path / "resumed"
    shutil.copytree(run_dir, copy)
    ckpt = Checkpointer(copy / "checkpoints")
    last = ckpt.latest_path()
    assert load_checkpoint(last)["loop"] and json.loads(load_checkpoint(last)["loop"])["finished"]
    last.unlink()  # as if killed before the end: the previous (mid-run, episode-end) checkpoint remains
    mid = json.loads(ckpt.latest()["loop"])
    assert 0 < mid["step"] < TINY.total_steps and not mid["finished"]
    (copy / "policy.pt").unlink()
    resumed = train(TINY, run_dir=copy, resume=True, quiet=True)
    assert _episodes(copy) == _episodes(run_dir)
    a, b = load_checkpoint(run_dir / "policy.pt")["model"], load_checkpoint(copy / "policy.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test_mean"] == result["test_mean"] and resumed["updates"] == result["updates"]


def test_resume_with_nstep_and_terminal_reserve_equals_uninterrupted(tmp_path):
    import dataclasses

    cfg = dataclasses.replace(TINY, n_step=3, terminal_share=0.1, terminal_buffer_size=50, eval_ema=0.05,
                              val_online=True)
    run_dir, copy = tmp_path / "full", tmp_path / "resumed"
    result = train(cfg, run_dir=run_dir, quiet=True)
    shutil.copytree(run_dir, copy)
    ckpt = Checkpointer(copy / "checkpoints")
    ckpt.latest_path().unlink()
    mid = ckpt.latest()
    assert 0 < json.loads(mid["loop"])["step"] < cfg.total_steps
    assert mid["reserve"]["size"] > 0 and (mid["reserve"]["terminated"] == 1).all()  # the failures are saved
    (copy / "policy.pt").unlink()
    resumed = train(cfg, run_dir=copy, resume=True, quiet=True)
    assert _episodes(copy) == _episodes(run_dir)
    a, b = load_checkpoint(run_dir / "policy.pt")["model"], load_checkpoint(copy / "policy.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    last_a = Checkpointer(run_dir / "checkpoints").latest()["model"]
    last_b = Checkpointer(copy / "checkpoints").latest()["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    ema_a = Checkpointer(run_dir / "checkpoints").latest()["ema"]  # the Polyak average is saved and resumed too
    ema_b = Checkpointer(copy / "checkpoints").latest()["ema"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert not all(torch.equal(ema_a[k], last_a[k]) for k in ema_a)  # it is not the online net
    assert resumed["updates"] == result["updates"] and resumed["test_mean"] == result["test_mean"]
    rows = [json.loads(x) for x in open(copy / "metrics.jsonl")]
    assert any("val_return_online" in r for r in rows)


def test_last_weights_of_an_ema_run_are_the_average(tmp_path):
    """--weights last tests the net that validation judged: the Polyak average when the run kept one; keeping it
    changes nothing in training."""
    import dataclasses

    from p09_dqn.evaluate import load_policy

    cfg = dataclasses.replace(TINY, total_steps=600, eval_every=300, eval_ema=0.01)
    train(cfg, run_dir=tmp_path / "run", quiet=True)
    train(dataclasses.replace(cfg, eval_ema=0.0), run_dir=tmp_path / "plain", quiet=True)
    assert _episodes(tmp_path / "run") == _episodes(tmp_path / "plain")  # the average never acts in training
    q, _ = load_policy(str(tmp_path / "run"), "last")
    ema = Checkpointer(tmp_path / "run" / "checkpoints").latest()["ema"]
    assert all(torch.equal(v, ema[k]) for k, v in q.state_dict().items())


def test_terminated_stored_truncated_not(tiny_run):
    run_dir, _ = tiny_run
    buf = Checkpointer(run_dir / "checkpoints").latest()["buffer"]
    flags = buf["terminated"].numpy()
    assert len(flags) == TINY.total_steps  # transition i was written at step i + 1, nothing overwritten
    episodes = _episodes(run_dir)
    fell = [s for s, _, n in episodes if n < LIMIT]
    timed_out = [s for s, _, n in episodes if n == LIMIT]
    assert fell and timed_out  # both kinds of episode end really happened
    assert all(flags[s - 1] == 1.0 for s in fell)
    assert all(flags[s - 1] == 0.0 for s in timed_out)  # truncation: stored as non-terminal, so it bootstraps
    assert flags.sum() == len(fell)  # no other transition is terminal


def test_short_run_beats_random_policy_3x(tmp_path):
    cfg = DQNConfig(total_steps=8_000, hidden=[64, 64], learning_starts=500, exploration_fraction=0.25,
                    eval_every=2_000, eval_episodes=10, test_episodes=20, seed=0)
    result = train(cfg, run_dir=tmp_path / "learn", quiet=True)
    assert result["test_mean"] >= 3 * result["random_mean"], result
    assert result["q_bounded"]
    assert (tmp_path / "learn" / "training.png").stat().st_size > 10_000
    assert "Did Q stay bounded?** yes" in (tmp_path / "learn" / "report.md").read_text()


def _cli(*args):
    code = "import sys; from p09_dqn.cli import {0}; sys.exit({0}(sys.argv[1:]))"
    name, rest = args[0], list(args[1:])
    return subprocess.run([sys.executable, "-c", code.format(name), *rest], capture_output=True, text=True,
                          timeout=120)


def test_eval_cli_with_gif(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    out = tmp_path / "ep.gif"
    r = _cli("evaluate_main", str(run_dir), "--episodes", "3", "--gif", str(out))
    assert r.returncode == 0, r.stderr
    assert "eval (3 greedy episodes of CartPole-v1): mean" in r.stdout
    assert out.stat().st_size > 1000 and out.read_bytes()[:3] == b"GIF"


def test_eval_cli_last_weights(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    r = _cli("evaluate_main", str(run_dir), "--episodes", "3", "--weights", "last")
    assert r.returncode == 0, r.stderr
    assert "eval (3 greedy episodes of CartPole-v1 (last weights)): mean" in r.stdout
    r = _cli("evaluate_main", str(run_dir / "policy.pt"), "--weights", "last")  # a policy.pt holds only the best net
    assert r.returncode == 2 and "--weights last" in r.stderr, r.stderr


def test_diagnostics_logged(tiny_run):
    run_dir, _ = tiny_run
    rows = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl")]
    diag = [r for r in rows if "grad_norm" in r]
    assert diag and all(r["grad_norm"] >= 0 and r["td_abs"] >= 0 and r["lr"] == TINY.lr for r in diag)
    assert all(0.0 <= r["buffer_terminal_frac"] <= 1.0 for r in diag)


def test_train_cli_smoke(tmp_path):
    r = _cli("train_main", "--total-steps", "300", "--learning-starts", "100", "--eval-every", "300",
             "--eval-episodes", "2", "--test-episodes", "2", "--hidden", "16", "--run-dir", str(tmp_path / "cli"))
    assert r.returncode == 0, r.stderr
    assert "eval (2 greedy episodes): mean" in r.stdout and "val_return" in r.stdout
    assert (tmp_path / "cli" / "report.md").exists() and (tmp_path / "cli" / "results.json").exists()


@pytest.mark.parametrize("args, needle", [
    (("train_main", "--env", "NoSuchEnv-v9", "--total-steps", "10"), "NoSuchEnv-v9"),
    (("train_main", "--env", "Pendulum-v1", "--total-steps", "10"), "Discrete actions"),
    (("train_main", "--lr", "-1"), "--lr"),
    (("train_main", "--resume", "/no/such/run"), "not a run directory"),
    (("evaluate_main", "/no/such/run"), "does not exist"),
    (("evaluate_main", "/no/such/policy.pt"), "does not exist"),
])
def test_bad_input_one_line_exit_2(args, needle):
    r = _cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr


def test_eval_cli_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "policy.pt"
    bad.write_bytes(np.arange(10).tobytes())
    r = _cli("evaluate_main", str(bad))
    assert r.returncode == 2 and r.stderr.startswith("error: cannot read checkpoint"), r.stderr
