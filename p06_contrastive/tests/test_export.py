import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bundle(tiny_run, tmp_path_factory):
    from p06_contrastive.export import run_export

    root = tmp_path_factory.mktemp("p06-artifacts")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the per-test DLM_ARTIFACTS is not set yet
        mp.setenv("DLM_ARTIFACTS", str(root))
        out = run_export(tiny_run[0], dims=16, version="t1", n_drift=500)
    return tiny_run[0], root / "package-search" / "t1", out


def test_bundle_follows_the_contract_and_searches_like_torch(bundle):
    import faiss
    import torch

    from dlm_core.bundle import load_bundle
    from dlm_core.predictors import load_predictor
    from p06_contrastive.data import encode, load_corpus
    from p06_contrastive.evaluate import load_run
    from p06_contrastive.export import compact_encoders

    run, path, out = bundle
    b = load_bundle(path)
    m = b.manifest
    assert m["task"] == "text-retrieval" and list(m["graphs"]) == ["query"]
    assert m["graphs"]["query"]["outputs"][0]["shape"] == [-1, 16] and m["postprocess"]["index_type"] == "SQ4"
    assert m["metrics"]["values"]["ndcg@10"] == out["test"]["ndcg@10"]
    lr = load_run(run)
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    assert sum(1 for _ in open(b.file("docs.jsonl"))) == len(ds.docs)
    # 100 held-out queries: the predictor's hits == FAISS over torch's compact query embeddings
    queries, _ = ds.queries("test")
    q_mod, _ = compact_encoders(lr, 16, True, ds.docs)
    with torch.no_grad():
        want = q_mod(torch.from_numpy(encode(lr.tokenizer, queries[:100], lr.cfg.max_query_len))).numpy()
    index = faiss.read_index(str(b.file("index.faiss")))
    want_scores, want_ids = index.search(want, 5)
    pred = load_predictor(path)
    assert pred.self_check() <= 1e-4
    got = pred.predict([{"query": q, "k": 5} for q in queries[:100]])
    # the same ranked scores; ids may swap inside a tie (8-bit codes make exact ties common)
    assert np.abs(np.array([[h["score"] for h in r["results"]] for r in got]) - want_scores).max() <= 1e-3
    overlap = np.mean([len({h["id"] for h in r["results"]} & {ds.docs[i]["id"] for i in row}) / 5
                       for r, row in zip(got, want_ids)])
    assert overlap >= 0.95
    assert np.abs(pred.run([pred.prepare(queries[0])]).embeddings[0] - want[0]).max() <= 1e-4


def test_int8_tables_stay_close_to_the_float_encoder(tiny_run):
    import torch

    from p06_contrastive.data import encode, load_corpus
    from p06_contrastive.evaluate import load_run
    from p06_contrastive.export import side_module

    lr = load_run(tiny_run[0])
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    ids = torch.from_numpy(encode(lr.tokenizer, ds.queries("val")[0][:64], lr.cfg.max_query_len))
    with torch.no_grad():
        exact = lr.encoder(ids, query=True).numpy()
        int8 = side_module(lr.encoder, query=True, int8=True)(ids).numpy()
        doc = side_module(lr.encoder, query=False, int8=True)(ids).numpy()
    assert (exact * int8).sum(1).min() > 0.999  # cosine of each query with its int8 version
    from p06_contrastive.export import bag_embeddings, bag_members

    fast = bag_embeddings(bag_members(lr.encoder), ids.numpy(), query=True, int8=True, batch_size=16)
    assert np.abs(fast - int8).max() < 1e-5  # the corpus path (embedding_bag) == the exported module
    assert np.abs(doc - int8).max() > 1e-3  # the asymmetric encoder's query side really is another graph


def test_batches_give_the_same_rows_and_bad_queries_get_clear_errors(bundle):
    from dlm_core.predictors import BadInput, load_predictor

    pred = load_predictor(bundle[1])
    qs = ["python json library", "x", "font for terminal emulators", "kernel driver firmware"] * 8
    whole = pred.run([pred.prepare(q) for q in qs])
    for n in (1, 7):
        part = pred.run([pred.prepare(q) for q in qs[:n]])
        assert np.abs(part.embeddings - whole.embeddings[:n]).max() <= 1e-5
    for bad, needle in (("", "empty"), ({"query": "x", "k": 0}, "k must"), ({"q": "x"}, "unknown field"),
                        (["x"], "must be a string")):
        with pytest.raises(BadInput, match=needle):
            pred.prepare(bad)
    manifest = json.loads((bundle[1] / "manifest.json").read_text())
    assert manifest["drift"]["rows"] == 500
