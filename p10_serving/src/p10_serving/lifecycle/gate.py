"""The gate a retrained candidate must pass before it is swapped in:

    1. it loads (every file's sha256) and passes its self-check (ONNX Runtime replays reference.npz);
    2. it is no worse on the fixed held-out test set: accuracy >= the serving model's - `gate_margin`;
    3. it is better on the held-out feedback (the drifted traffic it never trained on): McNemar's exact test on
       the rows the two models disagree on, one-sided, p < `gate_alpha`.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from dlm_core.data import load_dataset
from dlm_core.errors import DlmError
from dlm_core.predictors import Predictor, load_predictor

from ..config import RetrainPolicy


def predict_classes(p: Predictor, items: list, batch: int = 256) -> np.ndarray:
    out = [p.run([p.prepare(x) for x in items[i:i + batch]]).signal for i in range(0, len(items), batch)]
    return np.concatenate(out).astype(int) if out else np.zeros(0, int)


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
                test = load_dataset(prov["dataset"], seed=int(prov.get("split_seed", 0))).test
            except (DlmError, KeyError, OSError) as err:
                raise DlmError(f"no held-out test set for the gate ({err}); fetch it with `dlm data fetch`") from None
            n = self.policy.gate_test_rows or len(test.y)
            self.test_sets[key] = (list(test.x[:n]), np.asarray(test.y[:n]))
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
