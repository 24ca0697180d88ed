import dataclasses

import pytest
import torch

from p04_rnn.config import RNNConfig

TINY = RNNConfig(embed=8, hidden=16, layers=1, dropout=0.0, batch_size=8, seq_len=16, max_steps=6, eval_every=3,
                 log_every=1, val_chars=2000, warmup_steps=2, final_test=False)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg():
    return dataclasses.replace(TINY)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A 6-step run on the real corpus (vocab.json + checkpoints) for the generation tests."""
    from p04_rnn.train import train

    path = tmp_path_factory.mktemp("runs") / "tiny"
    train(dataclasses.replace(TINY), run_dir=path, quiet=True)
    return path
