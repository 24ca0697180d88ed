"""`debian-packages-trixie-new`: a real text shift for the Debian section classifier.

The section classifier of p06 is trained on `debian-packages` (Debian 12 "bookworm" `main`). Its shift is the
binary packages that are **new in Debian 13 "trixie"** `main`: packages whose name bookworm `main` does not
have, with their real Section (the late feedback label) and long description. New vocabulary (new upstream
ecosystems, new crates and Go modules), and a different section mix.

Fetch (`dlm data fetch debian-packages-trixie-new`, 11-12 s here with `debian-packages` present):

1. `apt-get update` with a private sources list (`deb [signed-by=<keyring>] <mirror> trixie main`) and private
   lists/cache directories (the system's apt state is not touched), `Acquire::Languages=en` and
   `--error-on=any`. The mirror is the one apt uses here (first `debian` URI of /etc/apt/sources.list[.d],
   http://deb.debian.org/debian by default). **apt verifies** the InRelease signature with
   /usr/share/keyrings/debian-archive-keyring.gpg (bookworm's keyring verifies trixie: InRelease carries
   signatures by the 12/bookworm and 13/trixie automatic signing keys and the 13/trixie stable release key)
   and the Packages / Translation-en files against the checksums in InRelease.
2. Checked again here, independently of apt, and recorded in SOURCE.json: `gpgv --keyring <keyring>` on the
   kept InRelease (the good signers are listed), and the sha256 of the *decompressed* Packages and
   Translation-en against InRelease's `SHA256` entries for `main/binary-amd64/Packages` and
   `main/i18n/Translation-en`. `verify_raw(path)` repeats the checksum check offline.
   Offline, the fetch stops with one line naming the mirror and the command to rerun.
3. Build, reusing the helpers of src_debian_packages (cat_index, build_documents: the Packages x
   Translation-en join on name + Description-md5, >= MIN_WORDS words, identical descriptions collapsed into one
   document represented by its shortest name). A document is kept when
   - none of its package names is in bookworm `main` (the names of the same apt Packages file the
     `debian-packages` snapshot was built from; saved in raw/bookworm-names.txt.gz so rebuilds do not depend
     on the system's apt lists); a description shared by a new and an old name is dropped (`mixed`),
   - its description is not word-for-word a bookworm description (renames such as the 64-bit time_t `...t64`
     libraries and soname bumps keep their text: `same_text_as_bookworm`, dropped; they are no shift and
     would be training documents),
   - its Section is one of the classifier's labels (the sections of the `debian-packages` snapshot; the
     count of dropped ones is `unseen_section`). Main's sections need no normalisation (no `contrib/` prefix).
4. Deterministic snapshot `documents.jsonl.gz` (gzip mtime 0, sorted keys) whose sha256 is recorded in
   SOURCE.json and checked at every load; the raw indexes stay in raw/ (InRelease, Packages, Translation-en
   as apt stored them, bookworm-names.txt.gz).

Splits (at load, by *source package* with a seeded permutation, all binaries of one source on one side):
`test` takes sources in permuted order while they fit in `n_test` (1,000 documents): held out to measure
accuracy on the shifted domain after retraining, never for retraining or gating. `stream` is the rest, in a
seeded random order: the documents sent through the server as the shift, with their sections as late labels.

Trixie is a moving suite (point releases 13.x): a later fetch may give other documents. The sha256 in
SOURCE.json is that of the snapshot built by that fetch, from the InRelease recorded next to it (Version and
Date in SOURCE.json and in `info["release"]`).

Measured here (InRelease Version 13.8, Date Sat, 21 Nov 2026; bookworm lists of 11 Jul 2026; 58 labels):
trixie main has 68,824 binary packages -> 56,585 documents; 9,014 documents have only new names,
375 mix new and old names, 2,238 of the new ones repeat a bookworm description word for word (944 of them
`t64` renames), 0 have a section outside the 58 labels -> **6,776 documents** (1,000 test / 5,776 stream),
against 54,067 for bookworm. Section shares, new-in-trixie vs bookworm:
python 19.6% vs 7.8%, libs 11.4% vs 10.7%, doc 7.8% vs 7.7%, libdevel 7.1% vs 8.2%, devel 5.9% vs 3.6%,
golang 5.6% vs 2.7%, utils 3.7% vs 4.0%, haskell 3.1% vs 4.0%, admin 3.1% vs 2.6%, rust 2.6% vs 1.1%,
misc 2.4% vs 1.3%, javascript 2.3% vs 2.9%, science 2.1% vs 2.9%, net 1.9% vs 3.5%, perl 1.9% vs 7.3%.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DlmError
from ..io import write_json
from .registry import Source, register, sha256_file
from .registry import fetch as fetch_dataset
from .src_debian_packages import (
    APT_LISTS,
    MIN_WORDS,
    SNAPSHOT,
    _apt_update_english,
    build_documents,
    cat_index,
    parse_stanzas,
    read_snapshot,
    write_snapshot,
)

NAME = "debian-packages-trixie-new"
SUITE = "trixie"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
N_TEST = 1000
RAW = "raw"
BOOKWORM_NAMES = "bookworm-names.txt.gz"
INDEX_TARGETS = {"packages": "main/binary-amd64/Packages", "translation": "main/i18n/Translation-en"}


@dataclasses.dataclass
class ShiftDataset:
    """Shifted documents with a `stream` (seeded random order) and a held-out `test` split (indices into docs)."""

    name: str
    docs: list[dict]  # id, packages, source, section, synopsis, text, tags
    stream: np.ndarray
    test: np.ndarray
    labels: list[str]  # the classifier's label set: bookworm's sections, sorted
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [d["text"] for d in self.docs]

    def split(self, split: str) -> tuple[list[str], np.ndarray]:
        """(texts, label index into `labels`) of the `stream` or `test` split, in split order."""
        idx = getattr(self, split)
        pos = {s: i for i, s in enumerate(self.labels)}
        return [self.docs[i]["text"] for i in idx], np.array([pos[self.docs[i]["section"]] for i in idx],
                                                             dtype=np.int64)


# --- building ------------------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(text.split())


def build_shift(packages_text: str, translation_text: str, bookworm_names: set[str], bookworm_texts: set[str],
                labels: list[str], min_words: int = MIN_WORDS) -> tuple[list[dict], dict]:
    """The documents of trixie whose names are all new, whose text is not bookworm's, with a known section."""
    docs, stats = build_documents(packages_text, translation_text, min_words)
    stats = {"trixie_" + k: v for k, v in stats.items()}
    drop = Counter()
    unseen = Counter()
    keep = []
    known = set(labels)
    for d in docs:
        old = [p for p in d["packages"] if p in bookworm_names]
        if len(old) == len(d["packages"]):
            continue  # a package bookworm already had
        if old:
            drop["mixed"] += 1
        elif _norm(d["text"]) in bookworm_texts:
            drop["same_text_as_bookworm"] += 1
            drop["same_text_t64"] += any(p.endswith("t64") or "t64-" in p for p in d["packages"])
        elif d["section"] not in known:
            unseen[d["section"]] += 1
        else:
            keep.append(d)
    stats.update({"documents_with_a_new_name": len(keep) + sum(unseen.values()) + drop["same_text_as_bookworm"]
                  + drop["mixed"], "mixed": drop["mixed"], "same_text_as_bookworm": drop["same_text_as_bookworm"],
                  "same_text_t64": drop["same_text_t64"], "unseen_section": sum(unseen.values()),
                  "unseen_sections": dict(sorted(unseen.items())), "documents": len(keep)})
    return keep, stats


def split_stream_test(docs: list[dict], seed: int = 0, n_test: int = N_TEST) -> tuple[np.ndarray, np.ndarray]:
    """(stream, test): sources in seeded order fill `test` while they fit in n_test; the stream is shuffled."""
    by_source: dict[str, list[int]] = {}
    for i, d in enumerate(docs):
        by_source.setdefault(d["source"], []).append(i)
    sources = sorted(by_source)
    rng = np.random.default_rng(seed)
    test, stream = [], []
    for j in rng.permutation(len(sources)):
        idx = by_source[sources[j]]
        (test if len(test) + len(idx) <= n_test else stream).extend(idx)
    stream = np.array(stream, dtype=np.int64)
    return stream[rng.permutation(len(stream))], np.array(sorted(test), dtype=np.int64)


def section_histogram(docs: list[dict]) -> dict[str, int]:
    counts = Counter(d["section"] for d in docs)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# --- fetching ------------------------------------------------------------------------------------------
def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI apt uses here (deb822 .sources or one-line sources.list), else deb.debian.org."""
    uris = []
    for f in sorted((etc / "sources.list.d").glob("*.sources")) if (etc / "sources.list.d").is_dir() else []:
        uris += re.findall(r"^URIs:\s*(.+)$", f.read_text(errors="replace"), re.M)
    for f in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        if f.is_file():
            uris += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", f.read_text(errors="replace"), re.M)
    for uri in (u for line in uris for u in line.split()):
        if re.search(r"/debian/?$", uri) and uri.startswith(("http://", "https://")):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def release_fields(inrelease_text: str) -> dict:
    """Origin/Suite/Version/Codename/Date of a (clear-signed) Release file."""
    return {k: m.group(1).strip() for k in ("Origin", "Label", "Suite", "Version", "Codename", "Date")
            if (m := re.search(rf"^{k}: (.+)$", inrelease_text, re.M))}


def release_sha256(inrelease_text: str) -> dict[str, tuple[str, int]]:
    """{path: (sha256, size)} of the SHA256 section of a Release file."""
    m = re.search(r"^SHA256:\n((?: .+\n)+)", inrelease_text, re.M)
    out = {}
    for line in (m.group(1).splitlines() if m else []):
        digest, size, name = line.split()
        out[name] = (digest, int(size))
    return out


def _raw_files(raw: Path) -> dict[str, Path]:
    found = {}
    for key, stem in (("packages", "Packages"), ("translation", "Translation-en")):
        hits = sorted(raw.glob(stem + "*"))
        if not hits:
            raise DlmError(f"{raw} has no {stem} index; refetch with: dlm data fetch {NAME} --force")
        found[key] = hits[0]
    return found


def verify_raw(path: Path) -> dict:
    """sha256 of the decompressed raw indexes against the InRelease kept next to them; DlmError if not."""
    raw = Path(path) / RAW
    sums = release_sha256((raw / "InRelease").read_text("utf-8", "replace"))
    out = {}
    for key, f in _raw_files(raw).items():
        want = sums.get(INDEX_TARGETS[key])
        got = hashlib.sha256(cat_index(f).encode("utf-8")).hexdigest()
        if want is None or got != want[0]:
            raise DlmError(f"{f} does not match the sha256 of {INDEX_TARGETS[key]} in {raw / 'InRelease'}; "
                           f"refetch with: dlm data fetch {NAME} --force")
        out[INDEX_TARGETS[key]] = got
    return out


def gpgv_signers(inrelease: Path, keyring: Path = KEYRING) -> list[str]:
    """The good signatures of a clear-signed file by the keyring (`gpgv`); DlmError when none."""
    if shutil.which("gpgv") is None:
        return []  # apt has already checked the signature; nothing more to say here
    proc = subprocess.run(["gpgv", "--keyring", str(keyring), "--status-fd", "1", str(inrelease)],
                          capture_output=True, text=True)
    good = re.findall(r"^\[GNUPG:\] GOODSIG \S+ (.+)$", proc.stdout, re.M)
    if proc.returncode != 0 or not good:
        raise DlmError(f"gpgv cannot verify {inrelease} with {keyring}; update debian-archive-keyring and refetch")
    return good


def apt_fetch(dest: Path, mirror: str | None = None, suite: str = SUITE, keyring: Path = KEYRING) -> dict:
    """`apt-get update` of `<mirror> <suite> main` into private dirs; copies InRelease + the two indexes to dest."""
    mirror = mirror or apt_mirror()
    if shutil.which("apt-get") is None:
        raise DlmError(f"{NAME} is fetched with apt-get, which this machine lacks; build it on a Debian machine")
    if not keyring.exists():
        raise DlmError(f"{keyring} is missing; install it (apt-get install debian-archive-keyring) and refetch")
    with tempfile.TemporaryDirectory(prefix="dlm-apt-") as tmp:
        tmp = Path(tmp)
        tmp.chmod(0o755)  # apt downloads as the unprivileged `_apt` user into lists/partial
        lists, cache = tmp / "lists", tmp / "cache"
        (lists / "partial").mkdir(parents=True)
        (cache / "archives" / "partial").mkdir(parents=True)
        (tmp / "sources.list").write_text(f"deb [signed-by={keyring}] {mirror} {suite} main\n")
        opts = {"Dir::Etc::SourceList": tmp / "sources.list", "Dir::Etc::SourceParts": "/dev/null",
                "Dir::State::Lists": lists, "Dir::Cache": cache, "Dir::Cache::pkgcache": "",
                "Dir::Cache::srcpkgcache": "", "Acquire::Languages": "en", "APT::Get::List-Cleanup": "0",
                "Acquire::GzipIndexes": "true", "Acquire::Retries": "1", "Acquire::http::Timeout": "20"}
        for target in ("Contents-deb", "DEP-11", "DEP-11-icons", "DEP-11-icons-small", "CNF"):
            opts[f"Acquire::IndexTargets::deb::{target}::DefaultEnabled"] = "false"
        cmd = ["apt-get", "update", "-q", "--error-on=any"] + [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr + proc.stdout).splitlines()
            errs = [ln for tag in ("E:", "Err", "W:") for ln in lines if ln.startswith(tag)]
            why = (errs or lines[-1:] or ["(no output)"])[0]
            raise DlmError(f"cannot fetch {suite}'s index from {mirror} with apt-get (offline?): {why.strip()}; "
                           f"with the Debian mirror reachable rerun: dlm data fetch {NAME}")
        prefix = "*_dists_" + suite
        found = {"InRelease": sorted(lists.glob(prefix + "_InRelease")),
                 "Packages": sorted(lists.glob(prefix + "_main_binary-amd64_Packages*")),
                 "Translation-en": sorted(lists.glob(prefix + "_main_i18n_Translation-en*"))}
        missing = [k for k, v in found.items() if not v]
        if missing:
            raise DlmError(f"apt-get update of {mirror} {suite} gave no {', '.join(missing)}; "
                           f"rerun: dlm data fetch {NAME} --force")
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.iterdir():
            old.unlink()
        for stem, (f, *_) in found.items():
            suffix = f.name[f.name.index(stem) + len(stem):]  # .lz4 / .xz / .gz / "" as apt stored it
            shutil.copyfile(f, dest / (stem + suffix))
    return {"mirror": mirror, "suite": suite, "keyring": str(keyring)}


def bookworm_reference() -> tuple[list[dict], dict, Path]:
    """(documents, snapshot meta, the apt Packages file it was built from) of `debian-packages`."""
    from .registry import load_dataset

    bw_path = fetch_dataset("debian-packages")
    ds = load_dataset("debian-packages")
    meta = json.loads((bw_path / "SOURCE.json").read_text())
    m = re.match(r"apt lists (\S+)", meta.get("origin", ""))
    packages = APT_LISTS / m.group(1) if m else None
    if packages is None or not packages.exists():
        _apt_update_english()
        hits = sorted(APT_LISTS.glob("*_dists_bookworm_main_binary-*_Packages*"))
        packages = hits[0] if hits else None
    if packages is None:
        raise DlmError(f"no bookworm main Packages index under {APT_LISTS}; run: apt-get update, then refetch")
    return ds.docs, meta, packages


def write_names(names: set[str], path: Path) -> None:
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(("\n".join(sorted(names)) + "\n").encode())


def read_names(path: Path) -> set[str]:
    return set(gzip.decompress(Path(path).read_bytes()).decode().split())


def build_from_raw(path: Path, labels: list[str], bookworm_texts: set[str]) -> tuple[list[dict], dict]:
    raw = Path(path) / RAW
    files = _raw_files(raw)
    return build_shift(cat_index(files["packages"]), cat_index(files["translation"]),
                       read_names(raw / BOOKWORM_NAMES), bookworm_texts, labels)


def _fetch(dest: Path) -> None:
    bw_docs, bw_meta, bw_packages = bookworm_reference()
    labels = sorted({d["section"] for d in bw_docs})
    raw = dest / RAW
    origin = apt_fetch(raw)
    signers = gpgv_signers(raw / "InRelease")
    checked = verify_raw(dest)
    bw_names = {st["Package"] for st in parse_stanzas(cat_index(bw_packages)) if "Package" in st}
    write_names(bw_names, raw / BOOKWORM_NAMES)
    docs, stats = build_from_raw(dest, labels, {_norm(d["text"]) for d in bw_docs})
    digest = write_snapshot(docs, dest / SNAPSHOT)
    write_json(dest / "SOURCE.json", {
        "origin": f"apt-get update: deb {origin['mirror']} {SUITE} main (Packages + Translation-en)",
        "release": release_fields((raw / "InRelease").read_text("utf-8", "replace")),
        "verification": {"apt": f"apt-get update verified InRelease with {origin['keyring']} and the indexes "
                                 "against it", "gpgv_good_signatures": signers, "sha256_vs_InRelease": checked},
        "bookworm": {"snapshot_sha256": bw_meta["sha256"][SNAPSHOT], "release_date": bw_meta.get("release_date"),
                     "packages_index": bw_packages.name, "package_names": len(bw_names),
                     "documents": len(bw_docs)},
        "labels": labels, "stats": stats,
        "sections": {"trixie_new": section_histogram(docs), "bookworm": section_histogram(bw_docs)},
        "note": "trixie is a moving suite (point releases): a later fetch may differ; sha256 is of this build",
        "sha256": {SNAPSHOT: digest, **{f"{RAW}/{p.name}": sha256_file(p) for p in sorted(raw.iterdir())}}})


def _load(path: Path, seed: int = 0, n_test: int = N_TEST) -> ShiftDataset:
    meta = json.loads((path / "SOURCE.json").read_text())
    digest = sha256_file(path / SNAPSHOT)
    if digest != meta["sha256"][SNAPSHOT]:
        raise DlmError(f"{path / SNAPSHOT} changed since it was built (sha256 mismatch); rebuild it with: "
                       f"dlm data fetch {NAME} --force")
    docs = read_snapshot(path / SNAPSHOT)
    stream, test = split_stream_test(docs, seed, n_test)
    return ShiftDataset(NAME, docs, stream, test, list(meta["labels"]), {
        "sha256": digest, "split_seed": seed, "documents": len(docs), "release": meta.get("release", {}),
        "origin": meta.get("origin", ""), "split": "by source package", "stream": len(stream), "test": len(test),
        "stats": meta.get("stats", {}), "sections": meta.get("sections", {}), "bookworm": meta.get("bookworm", {}),
        "verification": meta.get("verification", {})})


register(Source(
    name=NAME, kind="documents",
    description="Debian trixie main packages new since bookworm (a real shift for the section classifier): "
                "~6.8k documents with bookworm's sections; 1,000 test, the rest a stream, split by source",
    source="apt-get update of trixie main (Packages + Translation-en), signature checked with "
           "debian-archive-keyring",
    license="Debian package descriptions (DFSG, per package)",
    required=[SNAPSHOT, "SOURCE.json"], fetch=_fetch, load=_load))
