"""Repo-wide test setup: every test writes runs and bundles under its own tmp folder, never into the tree."""

import os

import pytest

os.environ.setdefault("DLM_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("DLM_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DLM_ARTIFACTS", str(tmp_path / "artifacts"))
    yield
