"""`debian-packages`: Debian's own package index as a retrieval corpus (synopsis -> long description).

Every binary package of Debian bookworm `main` is a document. The apt Packages index holds the one-line
synopsis, Section, Source and `Description-md5`; the long description is in the English translation index
(`Translation-en`), which apt fetches only with `apt-get update -o Acquire::Languages=en`. The two join on
package name + description checksum.

Built once by `dlm data fetch debian-packages` into a deterministic snapshot (`documents.jsonl.gz`, gzip
with mtime 0) whose sha256 is recorded in SOURCE.json and checked at every load:

- keep descriptions of >= 20 words; collapse identical descriptions (shared by -dev/-doc/-data siblings)
  into one document, represented by its shortest package name;
- query = the representative's synopsis; queries whose synopsis is shared by several documents are dropped
  (the document stays in the corpus);
- split by *source package* with a seeded permutation (all binaries of one source on the same side):
  2,000 test queries, 2,000 validation queries, the rest are training pairs. Queries of the source that
  straddles a boundary beyond the quota are dropped rather than moved to another split.
The search corpus is every kept document.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DlmError
from ..io import write_json
from .registry import Source, register, sha256_file

APT_LISTS = Path("/var/lib/apt/lists")
SNAPSHOT = "documents.jsonl.gz"
MIN_WORDS = 20
N_TEST = 2000
N_VAL = 2000


@dataclasses.dataclass
class DocumentDataset:
    """A document corpus with query splits: train/val/test are indices into `docs` (query = doc synopsis)."""

    name: str
    docs: list[dict]  # id, packages, source, section, synopsis, text, tags
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    info: dict = dataclasses.field(default_factory=dict)

    def queries(self, split: str) -> tuple[list[str], np.ndarray]:
        """(query texts, index of the one relevant document for each) of a split."""
        idx = getattr(self, split)
        return [self.docs[i]["synopsis"] for i in idx], idx

    @property
    def texts(self) -> list[str]:
        return [d["text"] for d in self.docs]


# --- reading apt's index files ------------------------------------------------------------------------
def cat_index(path: Path) -> str:
    """Decompressed text of an apt index file (lz4, gz, xz or plain)."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes()).decode("utf-8", "replace")
    if path.suffix != ".lz4":
        return path.read_text("utf-8", "replace")
    if shutil.which("lz4"):
        cmd = ["lz4", "-dc", str(path)]
    elif os.path.exists("/usr/lib/apt/apt-helper"):  # apt decompresses whatever it can read
        cmd = ["/usr/lib/apt/apt-helper", "cat-file", str(path)]
    else:
        try:
            import lz4.frame
        except ImportError:
            raise DlmError(f"cannot decompress {path}: install the `lz4` command (apt-get install lz4)") from None
        return lz4.frame.decompress(path.read_bytes()).decode("utf-8", "replace")
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise DlmError(f"`{' '.join(cmd)}` failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    return proc.stdout.decode("utf-8", "replace")


def parse_stanzas(text: str):
    """Yield deb822 stanzas as {field: value}; continuation lines keep their leading space and newline."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if not line:
                continue
            if line[0] in " \t" and key is not None:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            yield fields


def long_description(value: str) -> tuple[str, str]:
    """(synopsis, long text) of a Description field: ` .` lines are paragraph breaks."""
    first, *rest = value.split("\n")
    paragraphs, current = [], []
    for line in rest:
        line = line[1:] if line.startswith(" ") else line
        if line.strip() == ".":
            if current:
                paragraphs.append(" ".join(current))
            current = []
        else:
            current.append(line.strip())
    if current:
        paragraphs.append(" ".join(current))
    return first.strip(), "\n".join(p for p in paragraphs if p)


def build_documents(packages_text: str, translation_text: str, min_words: int = MIN_WORDS) -> tuple[list[dict], dict]:
    """Join the two indexes, filter short descriptions and collapse duplicates. Returns (docs, stats)."""
    long_by_key = {}
    for st in parse_stanzas(translation_text):
        if "Package" in st and "Description-md5" in st and "Description-en" in st:
            long_by_key[(st["Package"], st["Description-md5"])] = long_description(st["Description-en"])[1]
    by_text: dict[str, list[dict]] = {}
    stats = Counter()
    seen = set()
    for st in parse_stanzas(packages_text):
        name = st.get("Package")
        if not name or name in seen:
            continue
        seen.add(name)
        stats["packages"] += 1
        md5 = st.get("Description-md5")
        text = long_by_key.get((name, md5))
        if text is None:
            stats["no_translation"] += 1
            continue
        if len(text.split()) < min_words:
            stats["short"] += 1
            continue
        synopsis = st.get("Description", "").split("\n")[0].strip()
        tags = [t.strip() for t in st.get("Tag", "").replace("\n", " ").split(",") if t.strip()]
        source = st.get("Source", name).split(" ")[0]
        by_text.setdefault(" ".join(text.split()), []).append(
            {"package": name, "source": source, "section": st.get("Section", "unknown"), "synopsis": synopsis,
             "text": text, "tags": tags})
    docs = []
    for group in by_text.values():
        group.sort(key=lambda p: (len(p["package"]), p["package"]))
        rep = group[0]
        docs.append({"id": rep["package"], "packages": [p["package"] for p in group], "source": rep["source"],
                     "section": rep["section"], "synopsis": rep["synopsis"], "text": rep["text"],
                     "tags": rep["tags"]})
    docs.sort(key=lambda d: d["id"])
    stats["documents"] = len(docs)
    stats["collapsed"] = sum(len(g) - 1 for g in by_text.values())
    return docs, dict(stats)


def split_queries(docs: list[dict], seed: int = 0, n_test: int = N_TEST, n_val: int = N_VAL):
    """(train, val, test) document indices used as queries, split by source package with a seeded permutation."""
    counts = Counter(d["synopsis"].strip().lower() for d in docs)
    by_source: dict[str, list[int]] = {}
    for i, d in enumerate(docs):
        by_source.setdefault(d["source"], [])
        if counts[d["synopsis"].strip().lower()] == 1 and d["synopsis"].strip():
            by_source[d["source"]].append(i)
    sources = sorted(by_source)
    order = np.random.default_rng(seed).permutation(len(sources))
    test, val, train = [], [], []
    for j in order:
        idx = by_source[sources[j]]
        if len(test) < n_test:
            test.extend(idx[: n_test - len(test)])  # the overflow of a boundary source is dropped
        elif len(val) < n_val:
            val.extend(idx[: n_val - len(val)])
        else:
            train.extend(idx)
    return tuple(np.array(sorted(s), dtype=np.int64) for s in (train, val, test))


# --- fetch: apt lists -> snapshot --------------------------------------------------------------------
def _find_lists(lists: Path = APT_LISTS) -> tuple[Path | None, Path | None]:
    """The main-suite Packages and Translation-en files (not -updates/-security), if present."""
    pk = sorted(p for p in lists.glob("*_dists_*_main_binary-*_Packages*")
                if re.search(r"_dists_[a-z]+_main_", p.name) and not p.name.endswith(".diff_Index"))
    tr = sorted(p for p in lists.glob("*_dists_*_main_i18n_Translation-en*")
                if re.search(r"_dists_[a-z]+_main_", p.name))
    return (pk[0] if pk else None), (tr[0] if tr else None)


def _apt_update_english(retries: int = 20, wait: float = 15.0) -> None:
    """`apt-get update -o Acquire::Languages=en`, retried while another apt holds the lists lock."""
    if shutil.which("apt-get") is None:
        raise DlmError("debian-packages needs apt's Translation-en index and this machine has no apt-get")
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        raise DlmError("the Translation-en index is missing; as root run: apt-get update -o Acquire::Languages=en")
    cmd = prefix + ["apt-get", "update", "-q", "-o", "Acquire::Languages=en"]
    for attempt in range(retries):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            return
        out = proc.stderr + proc.stdout
        if "lock" not in out.lower() or attempt == retries - 1:
            tail = out.strip().splitlines()[-1:] or ["(no output)"]
            raise DlmError(f"`{' '.join(cmd)}` exited {proc.returncode}: {tail[0]}")
        time.sleep(wait)  # another engineer's apt is running: wait for its lock


def write_snapshot(docs: list[dict], path: Path) -> str:
    """Deterministic gzip'd JSON lines (mtime 0, sorted keys); returns its sha256."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as f:
        for d in docs:
            f.write((json.dumps(d, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(raw.getvalue())
    tmp.replace(path)
    return sha256_file(path)


def _fetch(dest: Path) -> None:
    packages, translation = _find_lists()
    if translation is None or packages is None:
        _apt_update_english()
        packages, translation = _find_lists()
    if translation is None or packages is None:
        raise DlmError(f"no main-suite Packages/Translation-en index under {APT_LISTS} after apt-get update")
    docs, stats = build_documents(cat_index(packages), cat_index(translation))
    digest = write_snapshot(docs, dest / SNAPSHOT)
    release = ""
    inrelease = packages.parent / (packages.name.split("_main_")[0] + "_InRelease")
    if inrelease.exists():
        m = re.search(r"^Date: (.+)$", inrelease.read_text("utf-8", "replace"), re.M)
        release = m.group(1) if m else ""
    write_json(dest / "SOURCE.json", {"origin": f"apt lists {packages.name} + {translation.name}",
                                      "release_date": release, "stats": stats, "sha256": {SNAPSHOT: digest}})


def read_snapshot(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _load(path: Path, seed: int = 0, n_test: int = N_TEST, n_val: int = N_VAL) -> DocumentDataset:
    meta = json.loads((path / "SOURCE.json").read_text())
    digest = sha256_file(path / SNAPSHOT)
    if digest != meta["sha256"][SNAPSHOT]:
        raise DlmError(f"{path / SNAPSHOT} changed since it was built (sha256 mismatch); rebuild it with: "
                       "dlm data fetch debian-packages --force")
    docs = read_snapshot(path / SNAPSHOT)
    train, val, test = split_queries(docs, seed, n_test, n_val)
    return DocumentDataset("debian-packages", docs, train, val, test,
                           {"sha256": digest, "split_seed": seed, "documents": len(docs),
                            "release_date": meta.get("release_date", ""), "origin": meta.get("origin", ""),
                            "split": "by source package", "queries": {"train": len(train), "val": len(val),
                                                                      "test": len(test)}})


register(Source(
    name="debian-packages", kind="documents",
    description="Debian bookworm main: synopsis -> long description, ~54k documents; 2,000 test / 2,000 val "
                "queries split by source package",
    source="apt lists: Packages + Translation-en (apt-get update -o Acquire::Languages=en)",
    license="Debian package descriptions (DFSG, per package)",
    required=[SNAPSHOT, "SOURCE.json"], fetch=_fetch, load=_load))
