import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dlm_core.checkpoint import Checkpointer, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dlm_core.errors import DlmError
from dlm_core.io import write_bytes

WRITER = """
import sys
from dlm_core.io import write_bytes
path = sys.argv[1]
i = 0
while True:
    i += 1
    write_bytes(path, bytes([i % 256]) * 4_000_000)
"""


def test_atomic_write_survives_kill(tmp_path):
    """Kill a process that rewrites a 4 MB file in a loop: the file is always one whole version."""
    target = tmp_path / "blob.bin"
    write_bytes(target, b"\x00" * 4_000_000)
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)])
        time.sleep(0.8 + 0.3 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = target.read_bytes()
        assert len(data) == 4_000_000
        assert data == data[:1] * len(data)  # every byte from the same write
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "blob.bin"]
    assert all(name.endswith(".tmp") for name in leftovers)  # at most the killed writer's temp file


def test_checkpoint_roundtrip_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 4,
                                        "rng": rng_state(), "note": "x"})
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["epoch"] == 4 and state["note"] == "x"
    assert torch.equal(state["model"]["weight"], model.weight.detach())
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    opt2.load_state_dict(state["optimizer"])


def test_rng_state_restores_every_generator():
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(DlmError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DlmError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_checkpoint_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(DlmError):
        load_checkpoint(tmp_path / "evil.pt")


def test_checkpointer_keeps_last_and_best(tmp_path):
    ck = Checkpointer(tmp_path, keep=2)
    assert ck.latest() is None
    for epoch in range(1, 5):
        ck.save(epoch, {"w": torch.tensor([float(epoch)])}, is_best=epoch == 2)
    assert ck.epochs() == [3, 4]
    assert ck.latest()["epoch"] == 4
    assert ck.best()["epoch"] == 2



def test_atomic_writes_get_the_modes_of_a_plain_write(tmp_path):
    """mkstemp makes 0600 files: a bundle or report written atomically must still be readable by other users
    (a container's non-root server reads bundles a root trainer wrote)."""
    import os

    from dlm_core.io import write_text

    old = os.umask(0o022)
    try:
        assert write_text(tmp_path / "f.txt", "x").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert write_text(tmp_path / "g.txt", "x").stat().st_mode & 0o777 == 0o600  # the umask still rules
    finally:
        os.umask(old)


def test_a_kill_between_the_two_writes_never_leaves_an_epoch_without_its_best(tmp_path, monkeypatch):
    """best.pt is written before epoch-N.pt: a resume from epoch N always finds the best checkpoint up to N."""
    import dlm_core.checkpoint as ck

    real, written = ck.save_checkpoint, []

    def killed_after_one_write(path, state):
        if written:
            raise KeyboardInterrupt  # the kill, before the second file of this save
        written.append(path.name)
        return real(path, state)

    monkeypatch.setattr(ck, "save_checkpoint", killed_after_one_write)
    with pytest.raises(KeyboardInterrupt):
        Checkpointer(tmp_path).save(1, {"w": torch.ones(2)}, is_best=True)
    assert written == ["best.pt"] and not (tmp_path / "epoch-1.pt").exists()


def test_resume_training_continues_exactly_where_the_uninterrupted_run_goes(tmp_path, capsys):
    """Several models and optimizers, a scheduler, a scaler, every RNG, and the metrics rows logged after the
    checkpoint (by the run that was killed) dropped, whether a row is numbered by `epoch` or `during_epoch`."""
    from dlm_core.checkpoint import resume_training
    from dlm_core.runs import RunDir

    class Scaler:  # what resume_training needs of a torch.amp.GradScaler
        def __init__(self):
            self.scale = 1.0

        def state_dict(self):
            return {"scale": self.scale}

        def load_state_dict(self, state):
            self.scale = state["scale"]

    def draws():
        return float(torch.rand(1)), float(np.random.rand()), random.random()

    def parts(seed):
        torch.manual_seed(seed)
        models = {"sgd": torch.nn.Linear(3, 2), "adam": torch.nn.Linear(3, 2)}
        opts = {"sgd": torch.optim.SGD(models["sgd"].parameters(), lr=0.1, momentum=0.9),
                "adam": torch.optim.Adam(models["adam"].parameters(), lr=0.1)}
        return models, opts, torch.optim.lr_scheduler.StepLR(opts["sgd"], 1, 0.5), Scaler()

    def epoch(models, opts, sched, scaler):
        x = torch.randn(4, 3) * (1 + np.random.rand()) + random.random()  # draws from torch, numpy and python
        for k, m in models.items():
            opts[k].zero_grad()
            torch.nn.functional.dropout(m(x), 0.5).pow(2).sum().backward()
            opts[k].step()
        sched.step()
        scaler.scale *= 2

    run = RunDir.at(tmp_path / "run")
    ckpt = Checkpointer(run.checkpoint_dir)
    assert resume_training(ckpt, {}, {}, run) is None
    models, opts, sched, scaler = parts(0)
    for e in (1, 2):
        epoch(models, opts, sched, scaler)
        run.log(step=10 * e, during_epoch=e)
        run.log(epoch=e, loss=float(e))
        ckpt.save(e, {"models": {k: m.state_dict() for k, m in models.items()}, "scheduler": sched.state_dict(),
                      "optimizers": {k: o.state_dict() for k, o in opts.items()}, "scaler": scaler.state_dict(),
                      "rng": rng_state(), "best": 0.5})
    run.log(step=30, during_epoch=3)  # the killed run got this far into epoch 3
    epoch(models, opts, sched, scaler)  # epoch 3, uninterrupted
    after = draws()

    again = parts(1)
    state = resume_training(ckpt, *again[:2], run, again[2], epoch_key=("epoch", "during_epoch"), scaler=again[3])
    assert state["epoch"] == 2 and state["best"] == 0.5
    assert "resumed from epoch 2" in capsys.readouterr().out
    assert [(r.get("epoch"), r.get("during_epoch")) for r in run.metrics()] == [(None, 1), (1, None), (None, 2),
                                                                                (2, None)]
    epoch(*again)
    for k in models:
        assert torch.equal(models[k].weight, again[0][k].weight) and torch.equal(models[k].bias, again[0][k].bias)
    assert sched.get_last_lr() == again[2].get_last_lr() and scaler.scale == again[3].scale == 8
    assert draws() == after  # the three generators continue as they did in the uninterrupted run


def test_resume_training_single_model_quiet_and_step_numbered(tmp_path, capsys):
    from dlm_core.checkpoint import resume_training
    from dlm_core.runs import RunDir

    run = RunDir.at(tmp_path / "run")
    ckpt = Checkpointer(run.checkpoint_dir)
    model = torch.nn.Linear(2, 1)
    for step in (5, 10, 15):
        run.log(step=step, loss=1.0 / step)
    ckpt.save(10, {"model": model.state_dict(), "step": 10})
    other = torch.nn.Linear(2, 1)
    state = resume_training(ckpt, other, None, run, epoch_key="step", quiet=True)
    assert state["step"] == 10 and torch.equal(other.weight, model.weight)
    assert [r["step"] for r in run.metrics()] == [5, 10] and capsys.readouterr().out == ""
