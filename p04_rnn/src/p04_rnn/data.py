"""The corpus, the character vocabulary, and contiguous streams for truncated BPTT.

The vocabulary is built from the training split only and saved with the run (vocab.json). A character
outside it is an error (DlmError naming the characters): there is no silent <unk> mapping.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dlm_core.data import load_dataset
from dlm_core.errors import DlmError
from dlm_core.io import write_json
from dlm_core.runs import runs_root


class Vocab:
    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        return sorted(set(text) - set(self.index))

    def encode(self, text: str) -> np.ndarray:
        bad = self.unknown(text)
        if bad:
            shown = " ".join(repr(c) for c in bad[:10])
            raise DlmError(f"{len(bad)} character(s) not in the training vocabulary: {shown}; "
                           f"use only these {len(self.chars)}: {''.join(self.chars)!r}")
        return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def save(self, path: str | Path) -> Path:
        return write_json(path, {"chars": self.chars})

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        path = Path(path)
        if not path.is_file():
            raise DlmError(f"{path} is missing; pass a run directory written by run_rnn_train")
        return cls(json.loads(path.read_text())["chars"])


def load_corpus(name: str = "shakespeare"):
    """dlm_core's TextDataset: contiguous train/val/test strings (90/5/5 at line boundaries)."""
    return load_dataset(name)


def stream_matrix(ids: np.ndarray, streams: int) -> np.ndarray:
    """Cut one long id sequence into `streams` contiguous rows (the tail that does not fit is dropped)."""
    n = len(ids) // streams
    if n < 2:
        raise DlmError(f"text of {len(ids)} chars is too short for {streams} streams; lower --batch-size")
    return ids[: n * streams].reshape(streams, n)


def bptt_windows(matrix: np.ndarray, seq_len: int, offset: int = 0):
    """(x, y) windows over the columns of a stream matrix, in order: y is x shifted by one character.

    Row r of window k continues row r of window k-1, so the hidden state can be carried across windows.
    """
    n = matrix.shape[1]
    for t in range(offset, n - 1, seq_len):
        end = min(t + seq_len, n - 1)
        yield matrix[:, t:end], matrix[:, t + 1:end + 1]


def latest_run(root: str | Path | None = None) -> Path:
    base = Path(root) if root is not None else runs_root() / "p04_rnn"
    ckpts = sorted(base.glob("*/checkpoints/*.pt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise DlmError(f"no trained p04_rnn run under {base}/; train one with run_rnn_train or pass a run dir")
    return ckpts[-1].parent.parent   # the run with the newest checkpoint
