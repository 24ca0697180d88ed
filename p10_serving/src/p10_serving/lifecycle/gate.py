"""The gate a retrained candidate must pass before it is swapped in:

    1. it loads (every file's sha256) and passes its self-check (ONNX Runtime replays reference.npz);
    2. it is no worse on the fixed held-out test set: accuracy >= the serving model's - `gate_margin`;
    3. it is better on the held-out feedback (the drifted traffic it never trained on): McNemar's exact test on
       the rows the two models disagree on, one-sided, p < `gate_alpha`.

The fixed test set is the test split of the dataset named in the bundle's provenance: arrays (x, y) for images;
for a text classifier trained on a document corpus (debian-packages: test = indices into its documents), each
test document's text and its label field (LABEL_FIELDS), as a class index into the bundle's labels.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from dlm_core.data import load_dataset
from dlm_core.errors import DlmError
from dlm_core.predictors import Predictor, load_predictor

from ..config import RetrainPolicy

LABEL_FIELDS = {"debian-packages": "section"}  # document corpora: the field a text classifier predicts


def predict_classes(p: Predictor, items: list, batch: int = 256) -> np.ndarray:
    out = [p.run([p.prepare(x) for x in items[i:i + batch]]).signal for i in range(0, len(items), batch)]
    return np.concatenate(out).astype(int) if out else np.zeros(0, int)


def documents_test(ds, name: str, p: Predictor) -> tuple[list[str], np.ndarray]:
    """A document corpus's test split for a text classifier: (texts, index of each one's label in p's labels)."""
    labels = p.manifest.get("postprocess", {}).get("labels")
    if p.task != "text-classification" or name not in LABEL_FIELDS or not labels:
        raise DlmError(f"no held-out test set for the gate: {name} is a document corpus, and {p.name} ({p.task}) "
                       f"is not a text classifier of one of {sorted(LABEL_FIELDS)}")
    pos, field_ = {s: i for i, s in enumerate(labels)}, LABEL_FIELDS[name]
    docs = [ds.docs[i] for i in ds.test if ds.docs[i][field_] in pos]
    return [d["text"] for d in docs], np.array([pos[d[field_]] for d in docs], dtype=np.int64)


class Gate:
    def __init__(self, policy: RetrainPolicy):
        self.policy = policy
        self.test_sets: dict[tuple, tuple] = {}

    def test_set(self, p: Predictor) -> tuple[list, np.ndarray]:
        """The fixed held-out test split named in the bundle's provenance (the first gate_test_rows rows)."""
        prov = p.manifest.get("provenance", {})
        key = (prov.get("dataset"), prov.get("split_seed"))
        if key not in self.test_sets:
            try:
                ds = load_dataset(prov["dataset"], seed=int(prov.get("split_seed", 0)))
            except (DlmError, KeyError, OSError) as err:
                raise DlmError(f"no held-out test set for the gate ({err}); fetch it with `dlm data fetch`") from None
            x, y = documents_test(ds, prov["dataset"], p) if hasattr(ds, "docs") else (ds.test.x, ds.test.y)
            n = self.policy.gate_test_rows or len(y)
            self.test_sets[key] = (list(x[:n]), np.asarray(y[:n]))
        return self.test_sets[key]

    def load(self, old: Predictor, bundle: str, loaded: set[str]) -> Predictor:
        """Check 1: the candidate loads, is the same model and task, is new, and passes its self-check."""
        try:
            candidate = load_predictor(bundle, threads=1)
        except DlmError as err:
            raise DlmError(f"candidate {bundle} refused: {err}") from None
        if candidate.name != old.name or candidate.task != old.task:
            raise DlmError(f"candidate {bundle} is {candidate.name} ({candidate.task}), not {old.name}")
        if candidate.version in loaded:
            raise DlmError(f"version {candidate.version} of {old.name} is already loaded")
        candidate.self_check()
        return candidate

    def check(self, old: Predictor, candidate: Predictor, gate_rows: list) -> dict:
        """Checks 2 and 3: every number behind the verdict, and `passed`."""
        test_x, test_y = self.test_set(old)
        fb_x, fb_y = [r[0] for r in gate_rows], np.array([r[1] for r in gate_rows])
        right = lambda p, xs, ys: predict_classes(p, xs) == ys  # noqa: E731
        old_test, new_test = right(old, test_x, test_y), right(candidate, test_x, test_y)
        old_fb, new_fb = right(old, fb_x, fb_y), right(candidate, fb_x, fb_y)
        gained, lost = int(np.sum(new_fb & ~old_fb)), int(np.sum(old_fb & ~new_fb))
        p_value = float(binomtest(gained, gained + lost, 0.5, alternative="greater").pvalue) if gained + lost else 1.0
        pol = self.policy
        checks = {"test_rows": len(test_y), "old_test_accuracy": float(old_test.mean()),
                  "new_test_accuracy": float(new_test.mean()), "margin": pol.gate_margin,
                  "feedback_rows": len(fb_y), "old_feedback_accuracy": float(old_fb.mean()),
                  "new_feedback_accuracy": float(new_fb.mean()), "mcnemar_gained": gained, "mcnemar_lost": lost,
                  "mcnemar_p": p_value, "alpha": pol.gate_alpha}
        checks["no_worse_on_test"] = checks["new_test_accuracy"] >= checks["old_test_accuracy"] - pol.gate_margin
        checks["better_on_feedback"] = p_value < pol.gate_alpha and gained > lost
        checks["passed"] = checks["no_worse_on_test"] and checks["better_on_feedback"]
        return checks
