"""Text files for calibrate_drift.py's p06 bundles, from data already cached by dlm_core.data (no download):

    queries.txt          held-out (validation + test) Debian package synopses: package-search's queries
    descriptions.txt     the same packages' long descriptions (one line each): package-section's inputs
    bible.txt            2,000 English Bible verses (a seeded sample of bible-en-es, every split): the other
                         domain the calibration table reports
    val_descriptions.txt the validation packages' long descriptions only, and
    shakespeare.txt      2,000 speeches of Shakespeare's tragedies (>= 8 words, a seeded sample): the set used to
                         CHOOSE the text models' out-of-domain score and its settings (`calibrate_drift.py
                         --choose`), so the reported Bible rows were never looked at while choosing

    .venv/bin/python p10_serving/calibration_texts.py runs/drift-calibration/texts
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from dlm_core.data import load_dataset


def one_line(s: str) -> str:
    return " ".join(s.split())


def speeches(text: str, min_words: int = 8) -> list[str]:
    """A play's speeches: blocks between blank lines whose first line is the speaker ("Hor."), joined."""
    out = []
    for block in text.split("\n\n"):
        lines = [x.strip() for x in block.strip().split("\n")]
        if len(lines) >= 2 and lines[0].endswith(".") and len(lines[0].split()) <= 3:
            speech = one_line(" ".join(lines[1:]))
            if len(speech.split()) >= min_words:
                out.append(speech)
    return out


def main(out: str = "runs/drift-calibration/texts") -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("debian-packages")  # split_seed 0, as the p06 bundles
    held = [ds.docs[i] for split in ("val", "test") for i in getattr(ds, split)]
    files = {"queries.txt": [one_line(d["synopsis"]) for d in held],
             "descriptions.txt": [one_line(d["text"]) for d in held],
             "val_descriptions.txt": [one_line(ds.docs[i]["text"]) for i in ds.val]}
    bible = load_dataset("bible-en-es")
    verses = [one_line(en) for split in (bible.train, bible.val, bible.test) for en, _ in split]
    files["bible.txt"] = [verses[i] for i in np.random.default_rng(0).choice(len(verses), 2000, replace=False)]
    play = load_dataset("shakespeare")
    lines = speeches("\n".join((play.train, play.val, play.test)))
    files["shakespeare.txt"] = [lines[i] for i in np.random.default_rng(0).choice(len(lines), 2000, replace=False)]
    for name, lines in files.items():
        lines = [x for x in lines if x]
        (out_dir / name).write_text("\n".join(lines) + "\n")
        print(f"{out_dir / name}: {len(lines)} lines")


if __name__ == "__main__":
    main(*sys.argv[1:])
