"""Repo-wide test setup: every test writes runs and bundles under its own tmp folder, never into the tree."""

import importlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("DLM_NO_PROGRESS", "1")

# pytest's importlib mode names p08_vae/tests/test_x.py "p08_vae.tests.test_x" and would create an empty
# "p08_vae" module for it, hiding the installed package of the same name; importing the real packages
# first keeps them in place.
for _folder in sorted(Path(__file__).parent.glob("p[0-9][0-9]_*")):
    importlib.import_module(_folder.name)


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("DLM_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DLM_ARTIFACTS", str(tmp_path / "artifacts"))
    yield
