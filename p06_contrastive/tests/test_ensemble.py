"""run_contrastive_ensemble: two seeds of the tiny recipe joined into one run that loads, embeds and is refused
where it must be."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from dlm_core.errors import DlmError


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory, tiny_run):
    from p06_contrastive.config import PRESETS
    from p06_contrastive.train import run_train

    path = tmp_path_factory.mktemp("p06-seed1") / "run"
    run_train(dataclasses.replace(PRESETS["tiny"], seed=1), run_dir=path, preset="tiny")
    return tiny_run[0], path


def test_ensemble_is_the_mean_of_the_members_cosines(two_seeds, tmp_path):
    from p06_contrastive.data import encode
    from p06_contrastive.ensemble import run_ensemble
    from p06_contrastive.evaluate import load_run
    from p06_contrastive.model import embed

    out = run_ensemble(list(two_seeds), tmp_path / "ens")
    joined, a, b = load_run(out["run_dir"]), load_run(two_seeds[0]), load_run(two_seeds[1])
    assert a.version != b.version and joined.version not in (a.version, b.version)
    assert joined.encoder.out_dim == 2 * a.encoder.out_dim == out["dim"]
    q = encode(joined.tokenizer, ["text editor", "python library for plotting"], joined.cfg.max_query_len)
    d = encode(joined.tokenizer, ["A small text editor for the terminal.", "Plots in Python."], joined.cfg.max_doc_len)
    sim = embed(joined.encoder, q, query=True) @ embed(joined.encoder, d).T
    members = [embed(m.encoder, q, query=True) @ embed(m.encoder, d).T for m in (a, b)]
    np.testing.assert_allclose(sim, (members[0] + members[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embed(joined.encoder, d), axis=1), 1.0, atol=1e-5)
    info = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert info["seeds"] == [0, 1] and info["encoder_version"] == joined.version


def test_ensemble_refuses_other_recipes_and_existing_folders(two_seeds, tmp_path):
    from p06_contrastive.ensemble import run_ensemble

    with pytest.raises(DlmError, match="two or more"):
        run_ensemble([two_seeds[0]], tmp_path / "one")
    with pytest.raises(DlmError, match="exists"):
        run_ensemble(list(two_seeds), tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (other / name).write_bytes((two_seeds[1] / name).read_bytes())
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "dim": cfg["dim"] * 2}))
    with pytest.raises(DlmError, match="differs .* in dim"):
        run_ensemble([two_seeds[0], other], tmp_path / "ens")
    assert not (tmp_path / "ens").exists()  # nothing half-written


def test_an_ensemble_cannot_be_resumed(two_seeds, tmp_path, capsys):
    from p06_contrastive.cli import train_main
    from p06_contrastive.ensemble import run_ensemble

    run_ensemble(list(two_seeds), tmp_path / "ens")
    with pytest.raises(SystemExit) as stop:
        train_main(["--resume", str(tmp_path / "ens")])
    assert stop.value.code == 2
    assert "is an ensemble" in capsys.readouterr().err
    assert torch.load(tmp_path / "ens" / "checkpoints" / "best.pt", weights_only=False)["members"] == 2
