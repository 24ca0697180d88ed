"""Shared fixture: one tiny trained run (seconds), reused by the evaluate/export/predict tests."""

import dataclasses

import pytest

from p03_cnn.config import PRESETS


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    from p03_cnn.train import train

    path = tmp_path_factory.mktemp("p03") / "tiny-run"
    cfg = dataclasses.replace(PRESETS["tiny"], epochs=2, device="cpu")
    result = train(cfg, run_dir=path)
    return path, result
