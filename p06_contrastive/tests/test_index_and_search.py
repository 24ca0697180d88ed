import subprocess
import sys

import numpy as np
import pytest

from dlm_core.errors import DlmError
from p06_contrastive.index import benchmark, build_index, load_index, save_index, search


def _cli(*args):
    code = f"import sys; from p06_contrastive.cli import {args[0]}; sys.exit({args[0]}({list(args[1:])!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.fixture(scope="module")
def embedded(tiny_run):
    from p06_contrastive.data import load_corpus
    from p06_contrastive.evaluate import corpus_embeddings, load_run

    lr = load_run(tiny_run[0])
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    return lr, ds, corpus_embeddings(lr, ds.docs)


def test_flat_is_exact_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(20, 16)).astype(np.float32)
    index, _, _ = build_index("flat", x)
    scores, ids = search(index, q, 5)
    brute = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :5]
    assert np.array_equal(ids, brute)
    assert np.allclose(scores, np.take_along_axis(q @ x.T, brute, 1), atol=1e-5)


def test_hnsw_recall_on_real_embeddings(embedded):
    _, _, emb = embedded
    rows = benchmark(emb, emb[:200], k=10, ef_search=(64,), nprobe=(8,), repeats=1)
    by = {r["index"]: r for r in rows}
    assert by["flat"]["recall@10_vs_exact"] == 1.0
    assert by["hnsw"]["recall@10_vs_exact"] >= 0.9
    assert by["ivfpq"]["memory_mb"] < by["flat"]["memory_mb"]


def test_save_load_round_trip_and_version_check(tmp_path, embedded):
    lr, ds, emb = embedded
    index, params, _ = build_index("hnsw", emb)
    save_index(tmp_path / "ix", index, {"kind": "hnsw", "encoder_version": lr.version, "run_dir": str(lr.path)},
               ds.docs)
    loaded, meta, docs = load_index(tmp_path / "ix", expected_version=lr.version)
    assert loaded.ntotal == len(ds.docs) and docs[3]["id"] == ds.docs[3]["id"]
    assert np.array_equal(search(loaded, emb[:5], 10)[1], search(index, emb[:5], 10)[1])
    with pytest.raises(DlmError, match="built by encoder"):
        load_index(tmp_path / "ix", expected_version="0000000000000000")


def _in_process(main, *args):
    """Run a console main in this process: (exit code, stdout, stderr) via capsys-free redirection."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args)) or 0
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_cli_build_search_and_edge_cases(tmp_path, tiny_run, embedded):
    from p06_contrastive.cli import build_index_main, search_main

    run = str(tiny_run[0])
    assert _in_process(build_index_main, run, "--index", "hnsw", "--out", str(tmp_path / "ix"))[0] == 0
    lr, ds, _ = embedded
    target = ds.docs[int(ds.train[0])]
    code, out, err = _in_process(search_main, target["synopsis"], "-k", "5", "--index", str(tmp_path / "ix"))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 5 and lines[0].split()[0] == "1"
    # k larger than the corpus: every document, once (Flat index)
    assert _in_process(build_index_main, run, "--index", "flat", "--out", str(tmp_path / "flat"))[0] == 0
    code, out, err = _in_process(search_main, "library for images", "-k", "100000", "--index", str(tmp_path / "flat"))
    ids = [line.split()[2] for line in out.strip().splitlines()]
    assert code == 0 and len(ids) == len(set(ids)) == len(ds.docs)
    # empty query / only unknown tokens / bad k: one line on stderr, exit 2
    assert "ⵣ" not in "".join(lr.tokenizer.get_vocab())
    for args in (("   ",), ("ⵣⵣⵣ ⵣⵣ",), ("solar", "-k", "0")):
        code, out, err = _in_process(search_main, *args, "--index", str(tmp_path / "ix"))
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error:"), err
    # an index whose recorded encoder differs from the run's encoder is refused in one line (real subprocess)
    import json

    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    meta["encoder_version"] = "deadbeefdeadbeef"
    (tmp_path / "ix" / "index.json").write_text(json.dumps(meta))
    bad = _cli("search_main", "editor", "--index", str(tmp_path / "ix"))
    assert bad.returncode == 2 and "built by encoder deadbeefdeadbeef" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_cli_bad_config_is_one_line():
    bad = _cli("train_main", "--dim", "30", "--heads", "4")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "divisible" in bad.stderr
    from p06_contrastive.cli import evaluate_main

    code, _, err = _in_process(evaluate_main, "/nonexistent/run")
    assert code == 2 and "not a run directory" in err


def test_evaluate_scores_every_retriever_and_tunes_the_fusion_on_val(tiny_run):
    from p06_contrastive.evaluate import run_evaluate

    out = run_evaluate(tiny_run[0], split="test", faiss_table=False, tsne_points=0)
    assert set(out["metrics"]) == {"dense", "bm25", "tfidf", "hybrid_rrf", "hybrid_rrf_weighted"}
    for m in out["metrics"].values():
        assert 0 <= m["recall@1"] <= m["recall@10"] <= m["recall@100"] <= 1
    assert out["metrics"]["bm25"]["recall@10"] > 0.3  # real lexical matches on real data
    fusion = out["fusion"]
    assert fusion["dense_weight"] in (0.25, 0.5, 1.0, 2.0, 4.0) and fusion["k0"] in (10, 30, 60)
    assert len(fusion["val_ndcg10_by_setting"]) == 15
    best = max(fusion["val_ndcg10_by_setting"].values())
    assert fusion["val_ndcg10_by_setting"][f"w={fusion['dense_weight']} k0={fusion['k0']}"] == best
