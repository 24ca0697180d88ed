"""Every trainer's --resume: the run's saved config is the truth. A flag that would change the model is refused
with one line naming it (exit 2) and the run folder stays byte for byte as it was; so is --preset. A real kill
and a resume through each command line are tested in test_kill_resume.py."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from dlm_core.runs import RunDir

BIN = Path(sys.executable).parent
TRAINERS = [  # command, config class, a flag that changes the model, its value
    ("run_autodiff_demo", "p01_autodiff.config:Config", "--hidden", "7"),
    ("run_loss_landscape", "p02_optimizers.config:LandscapeConfig", "--hidden", "7"),
    ("run_cnn_train", "p03_cnn.config:CNNConfig", "--width", "7"),
    ("run_rnn_train", "p04_rnn.config:RNNConfig", "--hidden", "7"),
    ("run_transformer_train", "p05_transformer.config:TransformerConfig", "--d-model", "7"),
    ("run_contrastive_train", "p06_contrastive.config:Config", "--dim", "7"),
    ("run_anomaly_train", "p07_autoencoder.config:AEConfig", "--bottleneck", "7"),
    ("run_vae_train", "p08_vae.config:VAEConfig", "--latent-dim", "7"),
    ("run_dqn_train", "p09_dqn.config:DQNConfig", "--hidden", "7"),
]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command,config,flag,value", TRAINERS, ids=[t[0] for t in TRAINERS])
def test_resume_refuses_a_model_flag_and_a_preset_and_writes_nothing(command, config, flag, value, tmp_path):
    module, name = config.split(":")
    cls = getattr(importlib.import_module(module), name)
    run = RunDir.at(tmp_path / "run", cls())  # a run folder with the default config, as a trainer writes it
    before = snapshot(run.path)
    r = subprocess.run([str(BIN / command), "--resume", str(run.path), flag, value], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, (r.stdout[-500:], r.stderr[-1000:])
    assert len(r.stderr.strip().splitlines()) == 1 and f"{flag} {value}" in r.stderr and "would change it" in r.stderr
    r = subprocess.run([str(BIN / command), "--resume", str(run.path), "--preset", "quick"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "drop --preset" in r.stderr, r.stderr[-1000:]
    assert snapshot(run.path) == before
