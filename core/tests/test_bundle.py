import json

import numpy as np
import pytest

from dlm_core.bundle import find_bundles, latest_bundle, load_bundle, save_bundle, verify_bundle
from dlm_core.errors import DlmError


def make(tmp_path, version="1"):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"\x01\x02" * 100)
    return save_bundle("toy", version, {"weights.bin": weights, "reference/input.npy": np.arange(3).tobytes()},
                       preprocess={"mean": 0.5}, labels=["a", "b"], metrics={"acc": 0.9}, root=tmp_path / "art")


def test_bundle_roundtrip(tmp_path):
    b = make(tmp_path)
    assert b.path == tmp_path / "art" / "toy" / "1"
    manifest = json.loads((b.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"weights.bin", "reference/input.npy", "preprocess.json", "labels.json",
                                      "metrics.json"}
    loaded = load_bundle(b.path)
    assert loaded.json("labels.json") == ["a", "b"] and loaded.json("metrics.json") == {"acc": 0.9}
    assert verify_bundle(b.path) == []
    assert find_bundles(tmp_path / "art") == [b.path]
    assert latest_bundle("toy", tmp_path / "art") == b.path


def test_tampered_file_is_refused(tmp_path):
    b = make(tmp_path)
    with open(b.path / "weights.bin", "r+b") as f:
        f.write(b"\xff")
    assert verify_bundle(b.path) == ["weights.bin: sha256 mismatch (file changed after export)"]
    with pytest.raises(DlmError, match="failed verification"):
        load_bundle(b.path)


def test_missing_and_extra_files_are_reported(tmp_path):
    b = make(tmp_path)
    (b.path / "labels.json").unlink()
    (b.path / "intruder.onnx").write_bytes(b"x")
    problems = verify_bundle(b.path)
    assert "labels.json: missing" in problems and "intruder.onnx: not in the manifest" in problems


def test_existing_version_needs_overwrite(tmp_path):
    make(tmp_path)
    with pytest.raises(DlmError, match="already exists"):
        make(tmp_path)


def test_cli_bundle_verify(tmp_path, dlm):
    b = make(tmp_path)
    ok = dlm("bundle", "verify", str(b.path))
    assert ok.returncode == 0 and ok.stdout.strip().endswith(": ok")
    (b.path / "metrics.json").write_text("{}")
    bad = dlm("bundle", "verify", str(b.path))
    assert bad.returncode == 1 and "metrics.json: sha256 mismatch" in bad.stdout
