"""One tiny trained run on real data (1,200 documents), shared by the tests that need an encoder."""

import pytest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    from p06_contrastive.config import PRESETS
    from p06_contrastive.train import run_train

    path = tmp_path_factory.mktemp("p06") / "run"
    result = run_train(PRESETS["tiny"], run_dir=path, preset="tiny")
    return path, result
