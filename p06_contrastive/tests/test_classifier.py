"""The section classifier: a real gain over the majority class on held-out packages, its bundle's predictor
equals torch on 100 held-out descriptions, the seed's simple request works."""

import numpy as np


def test_section_classifier_learns_and_its_bundle_equals_torch(tiny_run, tmp_path, monkeypatch):
    from dlm_core.predictors import load_predictor
    from p06_contrastive.classifier import train_and_export
    from p06_contrastive.data import encode, load_corpus
    from p06_contrastive.evaluate import load_run

    monkeypatch.setenv("DLM_ARTIFACTS", str(tmp_path))
    out = train_and_export(tiny_run[0], version="t", epochs=10, tfidf_cs=(10.0,))
    # the tiny encoder (32-d, 2 epochs on 1,200 documents) barely knows sections; the head must still fit them
    assert out["choice"]["train_accuracy"] > out["majority_class"]["accuracy"] + 0.08
    assert 0 < out["tfidf_logreg"]["accuracy"] <= 1 and out["choice"]["epochs"] >= 1
    pred = load_predictor(out["bundle"])
    assert pred.self_check() <= 1e-4
    lr = load_run(tiny_run[0])
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    texts = [ds.docs[i]["text"] for i in np.concatenate([ds.test, ds.val])][:100]
    assert len(texts) >= 80
    graph = pred.bundle.graph_file("model")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    ids = encode(lr.tokenizer, texts, lr.cfg.max_doc_len)
    logits = sess.run(["logits"], {"input_ids": ids})[0]
    got = pred.predict(texts)
    labels = pred.manifest["postprocess"]["labels"]
    assert [r["prediction"] for r in got] == [labels[i] for i in logits.argmax(1)]
    seed = pred.predict(["sample text"])[0]  # the seed's example request
    assert seed["prediction"] in labels and 0 < seed["confidence"] <= 1
