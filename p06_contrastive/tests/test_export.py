import numpy as np


def test_onnx_bundle_parity_and_manifest(tiny_run, tmp_path, monkeypatch):
    from dlm_core.bundle import load_bundle
    from p06_contrastive.export import ort_session, run_export

    out = run_export(tiny_run[0], index_kind="flat", version="t1")
    assert out["parity_max_abs_diff"] < 1e-4
    b = load_bundle(out["bundle"])
    for name in ("model.onnx", "tokenizer.json", "index.faiss", "docs.jsonl", "preprocess.json", "labels.json",
                 "metrics.json", "reference_input_ids.npy", "reference_output.npy", "parity.png"):
        b.file(name)
    sess = ort_session(b.file("model.onnx"))
    ids = np.load(b.file("reference_input_ids.npy"))
    got = sess.run(None, {"input_ids": ids[:5, :9]})[0]  # another batch size and length
    assert got.shape[0] == 5 and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-4)
    ref = sess.run(None, {"input_ids": ids})[0]
    assert np.abs(ref - np.load(b.file("reference_output.npy"))).max() < 1e-4
