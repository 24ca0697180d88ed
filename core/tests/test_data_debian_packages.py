"""debian-packages: the index join, filters and the source-package split (synthetic + the cached snapshot)."""

import gzip

import numpy as np
import pytest

from dlm_core.data import get_source
from dlm_core.data.src_debian_packages import (
    build_documents,
    long_description,
    read_snapshot,
    split_queries,
    write_snapshot,
)
from dlm_core.errors import DlmError

LONG = " ".join(f"word{i}" for i in range(25))
PACKAGES = """Package: foo
Source: foo-src (1.0-1)
Section: utils
Description: Frobnicate the foo
Description-md5: aaa
Tag: role::program,
 use::editing

Package: libfoo-dev
Source: foo-src
Section: libdevel
Description: Frobnicate the foo (development files)
Description-md5: bbb

Package: tiny
Section: misc
Description: A tiny package
Description-md5: ccc

Package: stale
Section: misc
Description: Translation has another checksum
Description-md5: ddd
"""
TRANSLATION = f"""Package: foo
Description-md5: aaa
Description-en: Frobnicate the foo
 {LONG}
 .
 Second paragraph.

Package: libfoo-dev
Description-md5: bbb
Description-en: Frobnicate the foo (development files)
 {LONG}
 .
 Second   paragraph.

Package: tiny
Description-md5: ccc
Description-en: A tiny package
 only five words here ok

Package: stale
Description-md5: zzz
Description-en: Translation has another checksum
 {LONG}
"""


def test_long_description_paragraphs():
    syn, text = long_description("Short line\n first\n line\n .\n next")
    assert syn == "Short line" and text == "first line\nnext"


def test_join_filter_and_collapse():
    docs, stats = build_documents(PACKAGES, TRANSLATION)
    # foo + libfoo-dev share the description (whitespace aside): one document, shortest name represents it;
    # tiny is under 20 words; stale's checksum does not match the translation.
    assert [d["id"] for d in docs] == ["foo"]
    assert docs[0]["packages"] == ["foo", "libfoo-dev"]
    assert docs[0]["source"] == "foo-src" and docs[0]["section"] == "utils"
    assert docs[0]["tags"] == ["role::program", "use::editing"]
    assert docs[0]["text"].startswith("word0 word1") and docs[0]["text"].endswith("\nSecond paragraph.")
    assert stats["short"] == 1 and stats["no_translation"] == 1 and stats["collapsed"] == 1


def _toy_docs(n_sources=300, per_source=3):
    docs = []
    for s in range(n_sources):
        for j in range(per_source):
            docs.append({"id": f"p{s}-{j}", "source": f"s{s}", "synopsis": f"syn {s} {j}", "text": "t"})
    docs.append({"id": "dup1", "source": "x1", "synopsis": "Same thing", "text": "a"})
    docs.append({"id": "dup2", "source": "x2", "synopsis": "same thing ", "text": "b"})
    return docs


def test_split_by_source_sizes_and_no_leak():
    docs = _toy_docs()
    train, val, test = split_queries(docs, seed=0, n_test=100, n_val=50)
    assert len(test) == 100 and len(val) == 50
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    src = {name: {docs[i]["source"] for i in idx} for name, idx in (("tr", train), ("va", val), ("te", test))}
    assert not (src["tr"] & src["te"] or src["tr"] & src["va"] or src["va"] & src["te"])
    ids = {docs[i]["id"] for i in np.concatenate([train, val, test])}
    assert "dup1" not in ids and "dup2" not in ids  # shared synopsis (case/space-insensitive): no query
    again = split_queries(docs, seed=0, n_test=100, n_val=50)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    other = split_queries(docs, seed=1, n_test=100, n_val=50)
    assert not np.array_equal(test, other[2])


def test_snapshot_is_deterministic(tmp_path):
    docs = _toy_docs(5)
    h1 = write_snapshot(docs, tmp_path / "a.jsonl.gz")
    h2 = write_snapshot(docs, tmp_path / "b.jsonl.gz")
    assert h1 == h2 and read_snapshot(tmp_path / "a.jsonl.gz") == docs


src = get_source("debian-packages")  # `make test` fetches it first (make setup)


def test_cached_snapshot_loads_and_splits():
    ds = src.load(src.path, seed=0)
    assert 50_000 < len(ds.docs) < 60_000
    assert len(ds.test) == 2000 and len(ds.val) == 2000 and len(ds.train) > 40_000
    assert len(ds.info["sha256"]) == 64
    sources = {n: {ds.docs[i]["source"] for i in getattr(ds, n)} for n in ("train", "val", "test")}
    assert not (sources["train"] & sources["test"]) and not (sources["val"] & sources["test"])
    texts = [" ".join(d["text"].split()) for d in ds.docs]
    assert len(set(texts)) == len(texts)
    assert min(len(t.split()) for t in texts) >= 20
    queries, rel = ds.queries("test")
    assert queries[0] == ds.docs[rel[0]]["synopsis"]


def test_tampered_snapshot_is_refused(tmp_path):
    import json
    import shutil

    shutil.copy(src.path / "SOURCE.json", tmp_path / "SOURCE.json")
    meta = json.loads((tmp_path / "SOURCE.json").read_text())
    with gzip.open(tmp_path / "documents.jsonl.gz", "wt") as f:
        f.write('{"id": "x"}\n')
    assert meta["sha256"]["documents.jsonl.gz"]
    with pytest.raises(DlmError, match="sha256 mismatch"):
        src.load(tmp_path)
