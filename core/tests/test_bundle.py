"""dlm-bundle/1: a real (toy) bundle of each kind round-trips; schema, checksum and self-check failures are
refused with a message naming the field or file; the predictors never import torch."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dlm_core.bundle import find_bundles, latest_bundle, load_bundle, validate_manifest, verify_bundle
from dlm_core.errors import DlmError


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from dlm_core.testing import toy_image_bundle, toy_text_bundle

    root = tmp_path_factory.mktemp("art")
    return root, {"image-classification": toy_image_bundle(root, "image-classification"),
                  "anomaly-detection": toy_image_bundle(root, "anomaly-detection"),
                  "text-classification": toy_text_bundle(root, "text-classification"),
                  "text-retrieval": toy_text_bundle(root, "text-retrieval")}


def edited(path, tmp_path, edit):
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    m = json.loads((copy / "manifest.json").read_text())
    edit(m)
    (copy / "manifest.json").write_text(json.dumps(m))
    return copy


@pytest.mark.parametrize("task", ["image-classification", "anomaly-detection", "text-classification",
                                  "text-retrieval"])
def test_each_task_round_trips_and_self_checks(bundles, task):
    from dlm_core.predictors import PREDICTORS, load_predictor

    path = bundles[1][task]
    b = load_bundle(path)
    assert b.manifest["schema"] == "dlm-bundle/1" and validate_manifest(b.manifest) == []
    pred = load_predictor(path)
    assert type(pred) is PREDICTORS[task] and pred.self_check() <= 1e-4
    drift = b.npz("drift_reference.npz")
    assert drift["features"].shape == (500, len(pred.feature_names)) and drift["predictions"].shape == (500,)
    assert drift["embeddings"].shape[0] == 500
    raw = [pred.example_input()] * 3
    out = pred.predict(raw)
    assert len(out) == 3 and out[0] == out[2] and "prediction" in out[0]


def test_batches_of_1_7_32_give_the_same_rows(bundles):
    from dlm_core.predictors import load_predictor

    pred = load_predictor(bundles[1]["image-classification"])
    x = np.random.default_rng(0).integers(0, 256, (32, 28, 28))
    rows = [pred.prepare(im) for im in x]
    whole = pred.run(rows)
    for n in (1, 7):
        part = pred.run(rows[:n])
        assert np.abs(part.tensors["logits"] - whole.tensors["logits"][:n]).max() <= 1e-5
        assert part.results == whole.results[:n] or all(
            a["prediction"] == b["prediction"] for a, b in zip(part.results, whole.results[:n]))


def test_tampered_file_is_refused(bundles, tmp_path):
    copy = tmp_path / "t"
    shutil.copytree(bundles[1]["image-classification"], copy)
    with open(copy / "model.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    assert verify_bundle(copy) == ["model.onnx: sha256 mismatch (file changed after export)"]
    with pytest.raises(DlmError, match="failed verification"):
        load_bundle(copy)


@pytest.mark.parametrize("edit,needle", [
    (lambda m: m.pop("task"), "manifest.task: missing"),
    (lambda m: m.update(schema="dlm-bundle/0"), "manifest.schema: expected 'dlm-bundle/1'"),
    (lambda m: m["postprocess"].pop("labels"), "manifest.postprocess.labels: missing"),
    (lambda m: m["preprocess"].update(height="28"), "manifest.preprocess.height: expected int"),
    (lambda m: m["drift"].update(split="test"), "manifest.drift.split"),
    (lambda m: m["graphs"]["model"]["inputs"][0].update(dtype="float99"), "dtype"),
    (lambda m: m.update(task="speech"), "manifest.task: 'speech' is not one of"),
])
def test_schema_problems_name_the_field(bundles, tmp_path, edit, needle):
    copy = edited(bundles[1]["image-classification"], tmp_path, edit)
    with pytest.raises(DlmError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        load_bundle(copy)


def test_missing_and_extra_files_are_reported(bundles, tmp_path):
    copy = tmp_path / "c"
    shutil.copytree(bundles[1]["text-retrieval"], copy)
    (copy / "docs.jsonl").unlink()
    (copy / "intruder.onnx").write_bytes(b"x")
    problems = verify_bundle(copy)
    assert "docs.jsonl: missing" in problems and "intruder.onnx: not in the manifest" in problems


def test_self_check_refuses_a_wrong_reference(bundles, tmp_path):
    """A bundle whose ONNX graph no longer gives the exported torch outputs is refused, even if re-sealed."""
    from dlm_core.data.registry import sha256_file
    from dlm_core.predictors import load_predictor

    copy = tmp_path / "r"
    shutil.copytree(bundles[1]["image-classification"], copy)
    ref = dict(np.load(copy / "reference.npz"))
    ref["model.out.logits"] = ref["model.out.logits"] + 0.01
    np.savez(copy / "reference.npz", **ref)
    m = json.loads((copy / "manifest.json").read_text())
    m["files"]["reference.npz"] = sha256_file(copy / "reference.npz")
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DlmError, match=r"self-check.*1\.0\de-02.*model\.logits"):
        load_predictor(copy).self_check()


def test_existing_version_needs_overwrite_and_latest_is_newest(tmp_path):
    from dlm_core.testing import toy_image_bundle

    a = toy_image_bundle(tmp_path, name="t", version="1")
    with pytest.raises(DlmError, match="already exists"):
        toy_image_bundle(tmp_path, name="t", version="1")
    b = toy_image_bundle(tmp_path, name="t", version="0-newer")
    assert find_bundles(tmp_path) == sorted([a, b]) and latest_bundle("t", tmp_path) == b


@pytest.mark.parametrize("modules, banned", [("dlm_core.bundle", "torch onnxruntime"),
                                             ("dlm_core.predictors, dlm_core.bundle_write", "torch")])
def test_bundle_modules_import_no_torch(modules, banned):
    code = (f"import sys, {modules}; bad = [m for m in sys.modules if m.split('.')[0] in {banned.split()}]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_cli_bundle_verify_and_list(bundles, tmp_path, dlm):
    root, paths = bundles
    ok = dlm("bundle", "verify", str(paths["text-classification"]))
    assert ok.returncode == 0 and "ok (self-check" in ok.stdout
    listed = dlm("bundle", "list", "--root", str(root))
    assert listed.returncode == 0 and "toy-text-retrieval" in listed.stdout and "test ndcg@10" in listed.stdout
    copy = tmp_path / "v"
    shutil.copytree(paths["image-classification"], copy)
    (copy / "reference.npz").write_bytes(b"junk")
    bad = dlm("bundle", "verify", str(copy))
    assert bad.returncode == 1 and "reference.npz: sha256 mismatch" in bad.stdout



def test_a_saved_bundle_is_readable_by_other_users(tmp_path):
    import os

    from dlm_core.testing import toy_image_bundle

    old = os.umask(0o022)
    try:
        b = toy_image_bundle(tmp_path, name="modes")
    finally:
        os.umask(old)
    assert b.stat().st_mode & 0o777 == 0o755
    assert all(os.stat(p).st_mode & 0o777 == 0o644 for p in b.iterdir())


def test_git_commit_is_short_with_dirty_suffix(tmp_path):
    from dlm_core.bundle import provenance
    from dlm_core.git import git_commit

    here = git_commit()
    assert here == "unknown" or re.fullmatch(r"[0-9a-f]{12}(-dirty)?", here), here
    assert provenance("p", tmp_path, "d", 0, 0, {})["git_commit"] == here
    assert git_commit(tmp_path) == "unknown"  # not a git tree
