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
    # the tiny run is asymmetric (the default): queries have their own graph, equal to torch's query side
    import torch

    from p06_contrastive.evaluate import load_run

    assert b.json("preprocess.json")["query_model"] == "query_model.onnx"
    q_sess = ort_session(b.file("query_model.onnx"))
    enc = load_run(tiny_run[0]).encoder
    with torch.no_grad():
        want = enc(torch.from_numpy(ids[:8, :12]), query=True).numpy()
        doc_side = enc(torch.from_numpy(ids[:8, :12])).numpy()
    got_q = q_sess.run(None, {"input_ids": ids[:8, :12]})[0]
    assert np.abs(got_q - want).max() < 1e-4 and np.abs(doc_side - want).max() > 1e-3
