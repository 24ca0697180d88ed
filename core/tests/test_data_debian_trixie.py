"""debian-packages-trixie-new: the real trixie indexes (fetched by `make setup`), rebuilt and checked."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from dlm_core.data import get_source, load_dataset
from dlm_core.data.src_debian_packages import SNAPSHOT, cat_index, write_snapshot
from dlm_core.data.src_debian_trixie import (
    BOOKWORM_NAMES,
    RAW,
    _norm,
    _raw_files,
    apt_fetch,
    apt_mirror,
    build_from_raw,
    build_shift,
    read_names,
    release_fields,
    split_stream_test,
    verify_raw,
)
from dlm_core.errors import DlmError

src = get_source("debian-packages-trixie-new")


@pytest.fixture(scope="module")
def ds():
    if not src.present():  # `make setup` fetches it; fetch here too, skip only when the mirror is out of reach
        try:
            src.fetch(src.path)
        except DlmError as err:
            pytest.skip(f"debian-packages-trixie-new cannot be fetched here: {err}")
    return load_dataset("debian-packages-trixie-new")


@pytest.fixture(scope="module")
def bookworm():
    return load_dataset("debian-packages")


def test_docs_are_new_and_labelled(ds, bookworm):
    labels = sorted({d["section"] for d in bookworm.docs})
    assert ds.labels == labels and len(labels) > 50
    assert 5_000 < len(ds.docs) < 10_000
    assert all(d["section"] in labels for d in ds.docs)
    names = read_names(src.path / RAW / BOOKWORM_NAMES)
    assert len(names) == ds.info["bookworm"]["package_names"] > 60_000
    assert {p for d in bookworm.docs for p in d["packages"]} <= names
    assert not any(p in names for d in ds.docs for p in d["packages"])
    bw_texts = {_norm(d["text"]) for d in bookworm.docs}
    texts = [_norm(d["text"]) for d in ds.docs]
    assert not any(t in bw_texts for t in texts) and len(set(texts)) == len(texts)
    assert min(len(t.split()) for t in texts) >= 20
    assert ds.info["release"]["Codename"] == "trixie" and ds.info["release"]["Version"].startswith("13")
    assert ds.info["stats"]["documents"] == len(ds.docs)
    # the shift is real: python/golang/rust shares grow against bookworm's
    share = {k: {s: c / sum(h.values()) for s, c in h.items()} for k, h in ds.info["sections"].items()}
    assert share["trixie_new"]["python"] > 1.5 * share["bookworm"]["python"]


def test_splits_by_source(ds):
    assert len(ds.test) == 1000 and len(ds.stream) + len(ds.test) == len(ds.docs)
    assert not set(ds.stream.tolist()) & set(ds.test.tolist())
    s_src = {ds.docs[i]["source"] for i in ds.stream}
    t_src = {ds.docs[i]["source"] for i in ds.test}
    assert not s_src & t_src
    again = split_stream_test(ds.docs, seed=0)
    assert np.array_equal(again[0], ds.stream) and np.array_equal(again[1], ds.test)
    other = split_stream_test(ds.docs, seed=1)
    assert not np.array_equal(other[1], ds.test)
    texts, y = ds.split("test")
    assert len(texts) == 1000 and ds.labels[y[0]] == ds.docs[ds.test[0]]["section"]


def test_raw_indexes_match_inrelease_and_rebuild_is_deterministic(ds, bookworm, tmp_path):
    meta = json.loads((src.path / "SOURCE.json").read_text())
    verify_raw(src.path)  # decompressed Packages / Translation-en against InRelease's SHA256
    assert release_fields((src.path / RAW / "InRelease").read_text())["Version"] == meta["release"]["Version"]
    assert meta["verification"]["gpgv_good_signatures"] or shutil.which("gpgv") is None
    bw_texts = {_norm(d["text"]) for d in bookworm.docs}
    # a small slice of the real indexes: the first 3,000 Packages stanzas, built twice
    files = _raw_files(src.path / RAW)
    packages = "\n\n".join(cat_index(files["packages"]).split("\n\n")[:3000])
    translation = cat_index(files["translation"])
    names = read_names(src.path / RAW / BOOKWORM_NAMES)
    a, stats_a = build_shift(packages, translation, names, bw_texts, ds.labels)
    b, stats_b = build_shift(packages, translation, names, bw_texts, ds.labels)
    assert a and stats_a == stats_b and stats_a["trixie_packages"] == 3000
    assert write_snapshot(a, tmp_path / "a.gz") == write_snapshot(b, tmp_path / "b.gz")
    # and the whole snapshot again from the kept raw files: the recorded sha256
    docs, stats = build_from_raw(src.path, ds.labels, bw_texts)
    assert stats == meta["stats"]
    assert write_snapshot(docs, tmp_path / SNAPSHOT) == meta["sha256"][SNAPSHOT] == ds.info["sha256"]


def test_tampered_files_are_refused(ds, tmp_path):
    shutil.copy(src.path / "SOURCE.json", tmp_path / "SOURCE.json")
    (tmp_path / SNAPSHOT).write_bytes((src.path / SNAPSHOT).read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(DlmError, match="sha256 mismatch.*dlm data fetch debian-packages-trixie-new --force"):
        src.load(tmp_path)
    raw = tmp_path / RAW
    raw.mkdir()
    shutil.copy(src.path / RAW / "InRelease", raw / "InRelease")
    (raw / "Packages").write_text("Package: x\n")
    (raw / "Translation-en").write_text("Package: x\n")
    with pytest.raises(DlmError, match="does not match the sha256"):
        verify_raw(tmp_path)
    assert hashlib.sha256(b"Package: x\n").hexdigest() not in (src.path / RAW / "InRelease").read_text()


def test_build_rules_on_a_toy_index():
    words = " ".join(f"w{i}" for i in range(25))
    pk = "\n\n".join(f"Package: {n}\nSource: {s}\nSection: {sec}\nDescription: {n}\nDescription-md5: {n}"
                     for n, s, sec in [("old", "o", "utils"), ("new", "n", "utils"), ("newsib", "o", "utils"),
                                       ("renamedt64", "r", "libs"), ("alien", "a", "nosuchsection")])
    tr = "\n\n".join(f"Package: {n}\nDescription-md5: {n}\nDescription-en: {n}\n {t}"
                     for n, t in [("old", words + " old"), ("new", words + " new"), ("newsib", words + " old"),
                                  ("renamedt64", words + " lib"), ("alien", words + " alien")])
    docs, stats = build_shift(pk, tr, {"old", "renamed"}, {_norm(words + " lib")}, ["libs", "utils"])
    assert [d["id"] for d in docs] == ["new"]
    assert stats["mixed"] == 1 and stats["same_text_as_bookworm"] == 1 and stats["same_text_t64"] == 1
    assert stats["unseen_section"] == 1 and stats["unseen_sections"] == {"nosuchsection": 1}


def test_mirror_from_apt_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: x\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    assert apt_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert apt_mirror(tmp_path) == "http://other.example/debian"
    assert apt_mirror(tmp_path / "none") == "http://deb.debian.org/debian"


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_unreachable_mirror_is_one_clear_error(tmp_path):
    with pytest.raises(DlmError, match=r"cannot fetch trixie's index from http://127\.0\.0\.1:9/debian .*"
                                       r"rerun: dlm data fetch debian-packages-trixie-new"):
        apt_fetch(tmp_path / "raw", mirror="http://127.0.0.1:9/debian")
