"""`bible-en-es`: verse-aligned English-Spanish pairs from Debian's SWORD Bible modules.

English: World English Bible (`sword-text-web`, module engWEB2015eb). Spanish: Reina-Valera 1909
(`sword-text-sparv`, module spaRV1909eb). Both are public domain. `dlm data fetch bible-en-es` installs
`diatheke` and the two modules with apt, exports every book with `diatheke -f internal` (book by book:
long ranges fail), cleans the markup and caches all aligned verses as `pairs.jsonl` (+ its sha256).

Cleaning, checked by eye on the raw export:
- the English markup is `<w>God</w><w>created</w>`: a space goes between adjacent word tags;
- poetry lines are `<l .../>` milestones (and `<lb/>`): they become spaces;
- the English puts Psalm headings before the verse key (dropped: they are not verse text); the Spanish
  puts them inside verse 1 as plain text ("Salmo de David. JEHOVÁ es mi pastor"): we cut everything
  before the chapter's capitalised first word, and drop the verse when no such word is found;
- the Spanish capitalises each chapter's first word ("EN el principio"): we restore its usual case.

The loader keeps pairs whose English side has <= 20 words, drops exact duplicates and splits with a
seed into 1,000 test / 1,000 val / rest train, keeping identical English sentences on one side.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DlmError
from ..io import write_json
from .registry import Source, apt_install, register, run_command, sha256_file

EN_MODULE, ES_MODULE = "engWEB2015eb", "spaRV1909eb"
SWORD_DIR = Path("/usr/share/sword/mods.d")
BOOKS = ["Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth", "I Samuel",
         "II Samuel", "I Kings", "II Kings", "I Chronicles", "II Chronicles", "Ezra", "Nehemiah", "Esther", "Job",
         "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah", "Jeremiah", "Lamentations", "Ezekiel",
         "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai",
         "Zechariah", "Malachi", "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "I Corinthians",
         "II Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians", "I Thessalonians",
         "II Thessalonians", "I Timothy", "II Timothy", "Titus", "Philemon", "Hebrews", "James", "I Peter",
         "II Peter", "I John", "II John", "III John", "Jude", "Revelation of John"]
PAIRS_FILE = "pairs.jsonl"
UPPER = "A-ZÁÉÍÓÚÑÜ"


@dataclasses.dataclass
class ParallelDataset:
    """Sentence pairs (source, target) split train/val/test."""

    name: str
    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]
    info: dict = dataclasses.field(default_factory=dict)


# --- fetch: apt + diatheke export ---------------------------------------------------------------------
def _apt_retry(package: str, check: Path, tries: int = 12, wait: float = 10.0) -> None:
    """apt_install, retried: another job may hold the dpkg lock for a while."""
    for attempt in range(tries):
        try:
            return apt_install(package, check)
        except DlmError as e:
            if attempt == tries - 1 or "lock" not in str(e).lower():
                raise
            time.sleep(wait)


def _export(module: str, book: str) -> str:
    run_command(["diatheke", "-b", "system", "-k", "modulelistnames"], "diatheke")  # a clear error if missing
    proc = subprocess.run(["diatheke", "-b", module, "-f", "internal", "-k", book], capture_output=True, text=True)
    if proc.returncode != 0 or f"{book} 1:1: " not in proc.stdout:
        raise DlmError(f"diatheke could not export {book} from {module}; is sword module {module} installed?")
    return proc.stdout


def _verses(raw: str, book: str) -> dict[str, tuple[str, str]]:
    """{'3:1': (prefix, body)}: prefix = markup before the verse key on its line (English Psalm headings)."""
    key = re.compile(rf"{re.escape(book)} (\d+):(\d+): ")
    out = {}
    for line in raw.splitlines():
        m = key.search(line)
        if m:
            out[f"{m.group(1)}:{m.group(2)}"] = (line[:m.start()], line[m.end():])
    return out


def clean_markup(body: str) -> str:
    """OSIS-ish markup of one verse -> plain text: split glued <w> words, drop titles/notes, lines -> spaces."""
    # word tags glue words: `<w>God</w><w>created</w>`, `men<w>from</w>`, `<w>entrado</w><transChange>Jesús`,
    # except a Spanish enclitic pronoun added to an accented verb: `<w>sáca</w><transChange>lo` -> "sácalo"
    body = re.sub(r"(\w*[áéíóú]\w*)</w><transChange[^>]*>(l[oae]s?|[mts]e|nos|os)</transChange>", r"\1\2</w>", body)
    s = re.sub(r"(</w>|</transChange>)\s*(?=<(?:w|transChange)\b|\w)", r"\1 ", body)
    s = re.sub(r"(\w)<w\b", r"\1 <w", s)  # (a <transChange> right after a letter is an enclitic: `sáca`+`lo`)
    s = re.sub(r"<title\b.*?</title>|<note\b.*?</note>", " ", s, flags=re.S)
    s = re.sub(r"<(?:l|lb|lg|div|chapter|p|milestone)\b[^>]*>", " ", s)  # poetry lines, paragraphs
    s = re.sub(r"<[^>]+>", "", s)  # the rest (w, q, transChange, ...) keeps its text
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s+([,.;:!?’”)\]])", r"\1", s)
    s = re.sub(r"([“‘(¿¡\[])\s+", r"\1", s)
    return s


def _opening(text: str):
    """The chapter's capitalised first word in a Spanish verse 1 ('JEHOVÁ', 'A TI', '¿POR')."""
    return re.search(rf"(?:(?<=\s)|^)[¿¡(]?(?:[AYOE] )?[{UPPER}]{{2,}}\b", text)


def _strip_spanish_heading(text: str) -> str | None:
    """Psalm verse 1: drop the heading before the capitalised first word; None when it cannot be found."""
    m = _opening(text)
    return None if m is None else text[m.start():]


def _recase(text: str, lower_counts: Counter, cap_counts: Counter) -> str:
    """'EN el principio' -> 'En el principio'; keep names capitalised ('JEHOVÁ es' -> 'Jehová es')."""
    m = re.search(rf"[{UPPER}]{{2,}}", text)
    if m is None or m.start() > 4:
        return text
    word = m.group(0)
    cap = word[0] + word[1:].lower()
    first = not re.search(r"\w", text[:m.start()])
    new = cap if first or cap_counts[cap] > lower_counts[word.lower()] else word.lower()
    return text[:m.start()] + new + text[m.end():]


def build_pairs(en_raw: dict[str, str], es_raw: dict[str, str]) -> list[dict]:
    """All aligned verses {ref, en, es} from per-book raw exports (`diatheke -f internal`)."""
    rows = []
    for book in BOOKS:
        en, es = _verses(en_raw[book], book), _verses(es_raw[book], book)
        for ref, (prefix, body) in en.items():
            if ref not in es:
                continue
            en_text, es_text = clean_markup(body), clean_markup(es[ref][1])
            if book == "Psalms" and es_text:
                chapter, verse = map(int, ref.split(":"))
                if chapter == 119 and verse % 8 == 1:  # stanza letters: 'ALEPH. ...', 'BETH ...'
                    es_text = re.sub(rf"^[{UPPER}]{{2,}}\.?\s+", "", es_text)
                elif verse == 1 and re.search(r'<title[^>]*type="psalm"', prefix):
                    es_text = _strip_spanish_heading(es_text)
            if es_text and en_text:
                rows.append({"ref": f"{book} {ref}", "en": en_text, "es": es_text})
    # restore the case of each chapter's capitalised first word, using the corpus' own usage
    words = Counter(w for r in rows if not r["ref"].endswith(":1") for w in re.findall(r"\w+", r["es"]))
    lower = Counter({w: c for w, c in words.items() if w.islower()})
    caps = Counter({w: c for w, c in words.items() if w[:1].isupper() and w[1:].islower()})
    for r in rows:
        if r["ref"].endswith(":1"):
            r["es"] = _recase(r["es"], lower, caps)
    return rows


def _fetch_bible(dest: Path) -> None:
    _apt_retry("diatheke", Path("/usr/bin/diatheke"))
    _apt_retry("sword-text-web", SWORD_DIR / f"{EN_MODULE}.conf")
    _apt_retry("sword-text-sparv", SWORD_DIR / f"{ES_MODULE}.conf")
    en_raw = {b: _export(EN_MODULE, b) for b in BOOKS}
    es_raw = {b: _export(ES_MODULE, b) for b in BOOKS}
    rows = build_pairs(en_raw, es_raw)
    tmp = dest / f".{PAIRS_FILE}.tmp"
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(dest / PAIRS_FILE)
    write_json(dest / "SOURCE.json", {
        "origin": f"Debian sword-text-web ({EN_MODULE}) + sword-text-sparv ({ES_MODULE}) via diatheke -f internal",
        "verses": len(rows), "sha256": {PAIRS_FILE: sha256_file(dest / PAIRS_FILE)}})


# --- load: filter, dedupe, grouped split ----------------------------------------------------------------
def split_pairs(pairs: list[tuple[str, str]], seed: int, n_test: int = 1000, n_val: int = 1000):
    """Seeded test/val/train split where every pair with the same source sentence lands on one side."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for p in pairs:
        groups.setdefault(p[0], []).append(p)
    keys = list(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    test, val, train = [], [], []
    for i in order:
        g = groups[keys[i]]
        if len(test) + len(g) <= n_test:
            test += g
        elif len(val) + len(g) <= n_val:
            val += g
        else:
            train += g
    return train, val, test


def _load_bible(path: Path, seed: int = 0, max_words: int = 20, n_test: int = 1000,
                n_val: int = 1000) -> ParallelDataset:
    f = path / PAIRS_FILE
    expected = json.loads((path / "SOURCE.json").read_text())["sha256"][PAIRS_FILE]
    if sha256_file(f) != expected:
        raise DlmError(f"{f} does not match its sha256 in SOURCE.json; refetch: dlm data fetch bible-en-es --force")
    rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    seen, pairs = set(), []
    for r in rows:
        p = (r["en"], r["es"])
        if len(p[0].split()) <= max_words and p not in seen:
            seen.add(p)
            pairs.append(p)
    if len(pairs) < n_test + n_val + 1:
        raise DlmError(f"bible-en-es: only {len(pairs)} pairs with <= {max_words} English words; raise max_words")
    train, val, test = split_pairs(pairs, seed, n_test, n_val)
    return ParallelDataset("bible-en-es", train, val, test,
                           {"verses": len(rows), "pairs": len(pairs), "max_words": max_words, "split_seed": seed,
                            "source_lang": "en", "target_lang": "es"})


register(Source(
    name="bible-en-es", kind="pairs",
    description="Bible verses EN->ES (WEB / Reina-Valera 1909), <=20 English words (~13k pairs); "
                "seeded 1000 test / 1000 val / rest train, identical English on one side",
    source="Debian sword-text-web + sword-text-sparv via diatheke (apt)", license="public domain",
    required=[PAIRS_FILE, "SOURCE.json"], fetch=_fetch_bible, load=_load_bible))
