"""Semantic search over a saved index: the query goes through the same tokenizer and encoder that built it.

Documented edge cases: an empty query or one of only unknown tokens -> DlmError (one line, exit 2 in the
CLI); k larger than the corpus -> every document, ranked (k is clamped to the corpus size).
"""

from __future__ import annotations

from pathlib import Path

from dlm_core.errors import DlmError
from dlm_core.io import read_json
from dlm_core.runs import runs_root

from .data import check_query
from .evaluate import load_run, query_embeddings
from .index import load_index, search


def latest_index(root=None) -> Path:
    """The most recently built index folder under runs/p06_contrastive/*/index-*/."""
    root = Path(root) if root is not None else runs_root() / "p06_contrastive"
    found = sorted(root.glob("*/index-*/index.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DlmError(f"no index under {root}; train (run_contrastive_train) and build one (run_build_index <run>)")
    return found[-1].parent


class Searcher:
    def __init__(self, index_dir, run_dir=None):
        meta_path = Path(index_dir) / "index.json"
        if not meta_path.is_file():
            raise DlmError(f"{index_dir} is not an index folder (no index.json); build one with run_build_index <run>")
        run_dir = run_dir or read_json(meta_path).get("run_dir")
        self.run = load_run(run_dir)
        self.index, self.meta, self.docs = load_index(index_dir, expected_version=self.run.version)

    def search(self, query: str, k: int = 10) -> list[dict]:
        check_query(self.run.tokenizer, query)
        if k < 1:
            raise DlmError(f"-k {k}: ask for at least 1 result")
        scores, ids = search(self.index, query_embeddings(self.run, [query]), k)
        return [{"rank": r + 1, "score": float(s), **self.docs[i]}
                for r, (s, i) in enumerate(zip(scores[0], ids[0])) if i >= 0]
