"""Text files for calibrate_drift.py's p06 bundles, from data already cached by dlm_core.data (no download):

    queries.txt       held-out (validation + test) Debian package synopses: package-search's queries
    descriptions.txt  the same packages' long descriptions (one line each): package-section's inputs
    bible.txt         2,000 English Bible verses (a seeded sample of bible-en-es, every split): the other domain

    .venv/bin/python p10_serving/calibration_texts.py runs/drift-calibration/texts
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from dlm_core.data import load_dataset


def main(out: str = "runs/drift-calibration/texts") -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("debian-packages")  # split_seed 0, as the p06 bundles
    held = [ds.docs[i] for split in ("val", "test") for i in getattr(ds, split)]
    one_line = lambda s: " ".join(s.split())  # noqa: E731
    files = {"queries.txt": [one_line(d["synopsis"]) for d in held],
             "descriptions.txt": [one_line(d["text"]) for d in held]}
    bible = load_dataset("bible-en-es")
    verses = [one_line(en) for split in (bible.train, bible.val, bible.test) for en, _ in split]
    files["bible.txt"] = [verses[i] for i in np.random.default_rng(0).choice(len(verses), 2000, replace=False)]
    for name, lines in files.items():
        lines = [x for x in lines if x]
        (out_dir / name).write_text("\n".join(lines) + "\n")
        print(f"{out_dir / name}: {len(lines)} lines")


if __name__ == "__main__":
    main(*sys.argv[1:])
