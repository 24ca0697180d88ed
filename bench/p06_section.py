"""p06 section classifier vs tuned TF-IDF + logistic regression, from one `run_section_classifier --out DIR` run:
test accuracy and macro-F1 of both, the paired bootstrap 95% intervals of the difference, the choices on val,
and the run's wall and CPU time (from `/usr/bin/time -v` output saved beside it, when there is one).

    /usr/bin/time -v run_section_classifier --version default --out runs/p06_contrastive/section-default \\
        > runs/p06_contrastive/section-default/log.txt 2>&1
    .venv/bin/python -P bench/p06_section.py runs/p06_contrastive/section-default
"""

from __future__ import annotations

import sys
from pathlib import Path

from dlm_core.benchmark import gnu_time, machine, write_result
from dlm_core.io import read_json


def main(run: str = "runs/p06_contrastive/section-default") -> None:
    run = Path(run)
    r = read_json(run / "section_result.json")
    ci = r["bootstrap_model_minus_tfidf"]
    result = {
        "bench": "p06 section classifier (58 Debian sections from a package's long description), test split",
        "machine": machine(),
        "ours": {**r["model"], "what": "wide & deep over TF-IDF word + char n-grams of the text and word "
                                       "n-grams of its first and last paragraph, averaged with a one-vs-rest LR "
                                       "over the same columns (share on val), minus tau * log train prior (tau: val)"},
        "peer": {**r["tfidf_logreg"], "what": "TF-IDF + logistic regression: features (all word 1-2-grams, "
                                                 "multinomial; or word + char 3-5-grams, one-vs-rest), C and the "
                                                 "prior shift's tau chosen on val",
                 "choice": r["tfidf_choice"]},
        "ratio": r["model"]["accuracy"] / r["tfidf_logreg"]["accuracy"],
        "goal": "beat the tuned TF-IDF + LR on test accuracy and macro-F1, paired bootstrap 95% interval "
                "(resampling source packages) above 0",
        "goal_met": all(ci[k]["ci95"][0] > 0 for k in ("accuracy", "macro_f1")),
        "bootstrap_model_minus_tfidf": ci,
        "bootstrap_model_minus_tfidf_by_item": r.get("bootstrap_model_minus_tfidf_by_item"),
        "network_alone": r.get("network_alone"), "majority_class": r["majority_class"],
        "linear_part": r.get("linear_part"), "network_choice": {k: v for k, v in r["choice"].items()},
        "tfidf_grid": r["tfidf_grid"], "config": r["config"], "test_packages": r["test_packages"],
        "train_seconds": r["train_seconds"], **gnu_time(run / "log.txt"), "run": str(run)}
    write_result("p06_section", result)


if __name__ == "__main__":
    main(*sys.argv[1:])
