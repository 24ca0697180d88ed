"""The exported bundle under the dlm-bundle/1 contract: the torch-free predictor gives torch's answers."""

import json
import shutil

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bundle(tiny_run, tmp_path_factory):
    from p03_cnn.export import export_run

    path, _ = tiny_run
    root = tmp_path_factory.mktemp("artifacts")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the per-test DLM_ARTIFACTS is not set yet
        mp.setenv("DLM_ARTIFACTS", str(root))
        out = export_run(path, name="fashion-cnn", version="test", n_reference=16, n_drift=500)
    assert out["parity_max_abs_diff"] <= 1e-4
    return path, root / "fashion-cnn" / "test"


def test_manifest_follows_the_contract(bundle):
    from dlm_core.bundle import load_bundle

    _, path = bundle
    b = load_bundle(path)
    m = b.manifest
    assert m["schema"] == "dlm-bundle/1" and m["task"] == "image-classification"
    assert m["graphs"]["model"]["inputs"] == [{"name": "image", "dtype": "float32", "shape": [-1, 1, 28, 28]}]
    assert [o["name"] for o in m["graphs"]["model"]["outputs"]] == ["logits", "embedding"]
    assert m["postprocess"]["labels"][9] == "Ankle boot" and m["metrics"]["split"] == "test"
    assert m["provenance"]["project"] == "p03_cnn" and m["provenance"]["dataset"] == "fashion-mnist"
    drift = b.npz("drift_reference.npz")
    assert drift["features"].shape == (500, 6) and drift["embeddings"].shape[0] == 500
    # the predictions on the validation images are spread over several classes (a real model, not a constant)
    assert len(np.unique(drift["predictions"])) >= 3


def test_predictor_equals_torch_on_100_test_images(bundle):
    import torch

    from dlm_core.predictors import load_predictor
    from p03_cnn.data import load_data, normalize
    from p03_cnn.evaluate import load_run
    from p03_cnn.model import with_tta

    run, path = bundle
    model, cfg, _ = load_run(run)
    model = with_tta(model, cfg.tta_flip)  # the graph averages each image with its mirror image, as the test did
    x = load_data(cfg.dataset, cfg.seed).test.x[:100]
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(normalize(x))), 1).numpy()
    pred = load_predictor(path)
    assert pred.self_check() <= 1e-4
    got = pred.predict(list(x))  # raw uint8 images through the predictor's own preprocessing
    conf = np.array([r["confidence"] for r in got])
    labels = pred.manifest["postprocess"]["labels"]
    assert [r["prediction"] for r in got] == [labels[i] for i in want.argmax(1)]
    assert np.abs(conf - want.max(1)).max() <= 1e-4


def test_batches_of_1_7_32_give_the_same_rows(bundle):
    from dlm_core.predictors import load_predictor

    pred = load_predictor(bundle[1])
    x = np.random.default_rng(0).integers(0, 256, (32, 28, 28)).astype(np.uint8)
    rows = [pred.prepare(im) for im in x]
    whole = pred.run(rows)
    for n in (1, 7):
        part = pred.run(rows[:n])
        assert np.abs(part.tensors["logits"] - whole.tensors["logits"][:n]).max() <= 1e-5
        assert [r["prediction"] for r in part.results] == [r["prediction"] for r in whole.results[:n]]


def test_tampered_missing_field_and_wrong_schema_are_refused(bundle, tmp_path):
    from dlm_core.bundle import load_bundle
    from dlm_core.errors import DlmError

    _, path = bundle
    cases = {}
    for case in ("tampered", "missing", "schema"):
        copy = tmp_path / case
        shutil.copytree(path, copy)
        cases[case] = copy
    with open(cases["tampered"] / "parity.png", "ab") as f:
        f.write(b"x")
    for case, edit in (("missing", lambda m: m["postprocess"].pop("labels")),
                       ("schema", lambda m: m.update(schema="dlm-bundle/0"))):
        m = json.loads((cases[case] / "manifest.json").read_text())
        edit(m)
        (cases[case] / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DlmError, match="parity.png: sha256 mismatch"):
        load_bundle(cases["tampered"])
    with pytest.raises(DlmError, match=r"manifest.postprocess.labels: missing"):
        load_bundle(cases["missing"])
    with pytest.raises(DlmError, match=r"manifest.schema: expected 'dlm-bundle/1'"):
        load_bundle(cases["schema"])


def test_export_refuses_to_overwrite(bundle, tmp_path, monkeypatch):
    from dlm_core.errors import DlmError
    from p03_cnn.export import export_run

    monkeypatch.setenv("DLM_ARTIFACTS", str(tmp_path))
    export_run(bundle[0], version="v", n_reference=4, n_drift=500)
    with pytest.raises(DlmError, match="already exists"):
        export_run(bundle[0], version="v", n_reference=4, n_drift=500)


def test_predict_cli_from_the_bundle_matches_the_run(bundle, tmp_path):
    import os
    import subprocess
    import sys

    from PIL import Image

    run, path = bundle
    img = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 30), dtype=np.uint8)).save(img)
    exe = os.path.join(os.path.dirname(sys.executable), "run_cnn_predict")
    outs = [subprocess.run([exe, str(p), str(img)], capture_output=True, text=True, timeout=120) for p in (run, path)]
    assert all(o.returncode == 0 for o in outs), [o.stderr for o in outs]
    from_run, from_bundle = (o.stdout.split(": ", 1)[1].split(", ") for o in outs)
    assert [c.rsplit(" ", 1)[0] for c in from_run] == [c.rsplit(" ", 1)[0] for c in from_bundle]


def test_the_graph_flip_averages_and_ships_the_tested_weights(bundle):
    import torch

    from dlm_core.bundle import load_bundle
    from dlm_core.checkpoint import Checkpointer
    from dlm_core.predictors import ort_session
    from p03_cnn.data import load_data, normalize

    run, path = bundle
    b = load_bundle(path)
    assert b.manifest["provenance"]["config"]["tta_flip"] is True
    sess = ort_session(b.graph_file("model"), threads=1)
    x = normalize(load_data("fashion-mnist", 0, eval_subset=256).val.x[:8])
    logits, emb = sess.run(None, {"image": x})
    logits_m, emb_m = sess.run(None, {"image": np.ascontiguousarray(x[..., ::-1])})
    assert np.abs(logits - logits_m).max() <= 1e-5 and np.abs(emb - emb_m).max() <= 1e-5
    weights = torch.load(b.file("weights.pt"), weights_only=True)
    best = Checkpointer(run / "checkpoints").best()
    assert "ema" not in best  # the default keeps no average: the raw weights are tested and shipped
    assert all(torch.equal(v, best["model"][k]) for k, v in weights.items())
