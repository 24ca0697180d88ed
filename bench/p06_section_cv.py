"""p06 section classifier vs tuned TF-IDF + logistic regression by K-fold cross-validation over every train + test
package (`run_section_cv`; folds by source package, val's choices remade per fold on the fixed val split): pooled
accuracy and macro-F1 of both, the paired bootstrap 95% intervals of the difference, per-fold scores and choices,
and the run's wall and CPU time (from the `/usr/bin/time -v` report in its log, when there is one).

    /usr/bin/time -v run_section_cv --out runs/p06_contrastive/section-cv > runs/p06_contrastive/section-cv.log 2>&1
    .venv/bin/python -P bench/p06_section_cv.py runs/p06_contrastive/section-cv runs/p06_contrastive/section-cv.log
"""

from __future__ import annotations

import sys
from pathlib import Path

from dlm_core.benchmark import gnu_time, machine, write_result
from dlm_core.io import read_json


def main(run: str = "runs/p06_contrastive/section-cv", log: str = "runs/p06_contrastive/section-cv.log") -> None:
    r = read_json(Path(run) / "section_cv.json")
    ci = r["bootstrap_model_minus_tfidf"]
    result = {
        "bench": f"p06 section classifier, {r['settings']['folds']}-fold cross-validation over "
                 f"{r['packages']:,} train + test packages (folds by source package)",
        "machine": machine(),
        "ours": {**r["scores"]["model"], "what": "the served recipe: wide & deep over TF-IDF word + char n-grams "
                 "and first / last paragraph word n-grams, averaged with a one-vs-rest LR over the same columns, "
                 "shifted by tau * log train prior (epoch, share, tau on val)"},
        "peer": {**r["scores"]["tfidf_logreg"], "what": "TF-IDF + logistic regression, val's features and C "
                 f"({r['settings'].get('baseline_features', 'word')}, C = {r['settings'].get('baseline_c', 100):g}), "
                 "its prior shift's tau on val"},
        "ratio": r["scores"]["model"]["accuracy"] / r["scores"]["tfidf_logreg"]["accuracy"],
        "goal": "beat the tuned TF-IDF + LR on accuracy and macro-F1, paired bootstrap 95% interval "
                "(resampling source packages) above 0",
        "goal_met": all(ci[k]["ci95"][0] > 0 for k in ("accuracy", "macro_f1")),
        "bootstrap_model_minus_tfidf": ci,
        "bootstrap_model_minus_tfidf_by_item": r.get("bootstrap_model_minus_tfidf_by_item"),
        "bootstrap_network_minus_tfidf": r["bootstrap_network_minus_tfidf"],
        "network_alone": r["scores"]["network"], "per_fold": r["per_fold"], "settings": r["settings"],
        **gnu_time(log), "run": str(run)}
    write_result("p06_section_cv", result)


if __name__ == "__main__":
    main(*sys.argv[1:])
