import json

import numpy as np
import pytest
import torch

from dlm_core.device import autocast, cpu_has_native_bf16, select_device, set_cpu_threads
from dlm_core.errors import DlmError
from dlm_core.runs import RunDir, format_metrics, list_runs
from dlm_core.seed import data_rng, seed_everything, torch_generator


def test_seed_everything_reproduces_torch_and_numpy():
    seed_everything(3)
    a = (torch.randn(5), np.random.rand(5))
    seed_everything(3)
    b = (torch.randn(5), np.random.rand(5))
    seed_everything(4)
    c = torch.randn(5)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not torch.equal(a[0], c)


def test_data_rng_streams_are_reproducible_and_independent():
    assert np.array_equal(data_rng(0, 5).permutation(100), data_rng(0, 5).permutation(100))
    assert not np.array_equal(data_rng(0, 5).permutation(100), data_rng(0, 6).permutation(100))
    assert torch.equal(torch.randperm(50, generator=torch_generator(1, 2)),
                       torch.randperm(50, generator=torch_generator(1, 2)))


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(DlmError, match="not a device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DlmError, match="CUDA is not available"):
            select_device("cuda:0")
    with autocast(torch.device("cpu")):  # no-op on CPU unless asked: float32 stays float32
        assert (torch.ones(2) @ torch.ones(2)).dtype == torch.float32
    with autocast(torch.device("cpu"), cpu_bf16=True):  # bf16 only where the CPU has it natively
        expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == expected


def test_cpu_threads_are_shared_among_torchrun_ranks(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("DLM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    try:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
        assert set_cpu_threads() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")  # more ranks than cores: one thread each
        assert set_cpu_threads() == 1
        monkeypatch.delenv("LOCAL_WORLD_SIZE")
        assert set_cpu_threads() == 8
        monkeypatch.setenv("DLM_THREADS", "3")  # an explicit count wins
        assert set_cpu_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_run_dir_layout_and_metrics(tmp_path):
    run = RunDir.create("proj", {"lr": 0.1}, run_id="r1", root=tmp_path)
    run.log(epoch=1, loss=np.float32(0.5))
    run.log(epoch=2, loss=0.25)
    with open(run.file("metrics.jsonl"), "a") as f:
        f.write('{"epoch": 3, "lo')  # a line cut by a kill
    assert json.loads(run.file("config.json").read_text()) == {"lr": 0.1}
    assert [r["epoch"] for r in run.metrics()] == [1, 2]
    run.truncate_metrics(lambda r: r["epoch"] < 2)
    assert [r["epoch"] for r in run.metrics()] == [1]
    assert run.checkpoint_dir.is_dir()
    runs = list_runs(tmp_path)
    assert [(r["project"], r["run"], r["rows"]) for r in runs] == [("proj", "r1", 1)]


def test_disabled_run_dir_writes_nothing(tmp_path):
    run = RunDir.create("proj", {"a": 1}, run_id="r", root=tmp_path, enabled=False)
    run.log(epoch=1)
    run.write_report("x")
    assert not (tmp_path / "proj").exists()


def test_format_metrics():
    assert format_metrics(epoch=3, loss=0.123456, acc=0.9, steps=41200.0) == \
        "epoch: 3 loss: 0.1235 acc: 0.9 steps: 41200.0"


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    a = RunDir.create("proj", {"a": 1}, root=tmp_path)
    b = RunDir.create("proj", {"a": 2}, root=tmp_path)
    assert a.path != b.path and a.path.is_dir() and b.path.is_dir()
