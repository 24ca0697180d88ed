"""Retraining the section classifier from a server's event (dlm_core.retrain, dlm-retrain-event/1): the same
recipe as the serving bundle (its SectionConfig, read from the bundle's provenance) on the original training
split plus the labelled feedback the server collected; then an export under the bundle contract, next to the
serving bundle. The server gates and swaps it; nothing here touches serving.

    run_section_retrain runs/retrain/events/<id>.json [--feedback-share 0.25] [--runs-root DIR]

The recipe, and why:
- the TF-IDF vocabulary is refitted on train + feedback (each feedback text once): a shift to new packages
  brings new words (crate, Go module and Python package names) that the old vocabulary maps to nothing, so
  warm-starting the old weights is not possible either (the columns change): the model is trained anew, which
  the quick preset does in a minute or two;
- the feedback is repeated so that it is about `feedback_share` of each epoch's rows: a few hundred
  feedback texts among 12,000-48,000 training packages would be ~1-4% of the gradient steps and barely move the
  model, while the whole training split keeps it from forgetting the old traffic (the gate's no-worse-on-test
  check);
- the epoch is chosen on the original validation split (bookworm packages): the feedback is all there is of the
  new traffic and the server holds out its own share of it for the gate, so none is left to validate on. Val
  accuracy guards against over-fitting the repeated feedback at the expense of the old traffic;
- the new bundle's drift reference is the feedback itself (the traffic the new model is adapted to, as p03's
  retrainer does), so its drift monitor does not keep alerting on the shift it was retrained for.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from dlm_core.bundle import MIN_DRIFT_ROWS, load_bundle, provenance
from dlm_core.errors import DlmError
from dlm_core.io import write_json
from dlm_core.retrain import feedback, read_event

from .config import SECTION_PRESETS, SectionConfig
from .section import (
    choose_prior_shift,
    export_bundle,
    fit_vectorizers,
    log_prior,
    predict_proba,
    scores,
    section_data,
    train_mlp,
    transform,
)


def say(*args) -> None:
    print(*args, flush=True)


def retrain_config(base: dict, epochs: int | None = None) -> SectionConfig:
    """The serving bundle's SectionConfig (its provenance; tfidf_cs, a tuple, is not stored there: the preset's)."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in base.items()
              if k in SectionConfig.__dataclass_fields__}
    cfg = dataclasses.replace(SECTION_PRESETS["default"], **fields)
    return dataclasses.replace(cfg, epochs=epochs) if epochs else cfg


def feedback_repeat(n_train: int, rows: int, share: float) -> int:
    """How often each feedback text is repeated so that the feedback is about `share` of an epoch's rows."""
    return max(1, round(share * n_train / ((1 - share) * rows)))


def old_bundle(event: dict):
    if event["task"] != "text-classification":
        raise DlmError(f"run_section_retrain retrains text classifiers; event {event['id']} is for a {event['task']}")
    old = load_bundle(event["bundle"])
    if old.manifest["preprocess"].get("type") != "ngrams":
        raise DlmError(f"{old.path} is not a section classifier (preprocess {old.manifest['preprocess'].get('type')})")
    return old


def retrain(event_path, feedback_share: float = 0.25, runs_root: str | None = None, epochs: int | None = None,
            log=None) -> dict:
    """Train, export and describe the candidate for one event: {"bundle", "run_dir", "test_acc", ...}."""
    log, t0 = log or say, time.perf_counter()
    event = read_event(event_path)
    old = old_bundle(event)
    prov = old.manifest["provenance"]
    x, y = feedback(event)
    if len(y) < MIN_DRIFT_ROWS:
        raise DlmError(f"{len(y)} feedback rows; retraining needs at least {MIN_DRIFT_ROWS} (they become the new "
                       "bundle's drift reference)")
    cfg = retrain_config(prov.get("config", {}), epochs)
    texts, ys, labels = section_data(int(prov.get("split_seed", 0)), cfg.max_train, cfg.seed)
    if labels != list(old.manifest["postprocess"]["labels"]):
        raise DlmError(f"the serving bundle's labels are not the {len(labels)} sections of debian-packages")
    fb = [str(t) for t in x]
    repeat = feedback_repeat(len(ys["train"]), len(fb), feedback_share)
    run_dir = Path(runs_root or "runs/p06_contrastive") / f"section-retrain-{event['id']}"
    log(f"retraining {event['model']} {event['version']} ({event['reason']}): {len(fb)} feedback texts x {repeat} "
        f"+ {len(ys['train'])} training packages, {cfg.epochs} epochs -> {run_dir}")
    vecs = fit_vectorizers(texts["train"] + fb, cfg)  # the vocabulary sees each feedback text once
    train_x = transform(vecs, texts["train"] + fb * repeat)
    train_y = np.concatenate([ys["train"], np.tile(np.asarray(y, dtype=ys["train"].dtype), repeat)])
    xv, xt = transform(vecs, texts["val"]), transform(vecs, texts["test"])
    model, choice = train_mlp(train_x, train_y, xv, ys["val"], len(labels), cfg, log)
    prior = log_prior(train_y, len(labels))
    shift = choose_prior_shift(np.log(predict_proba(model, xv) + 1e-12), ys["val"], prior)
    test = scores(ys["test"], (np.log(predict_proba(model, xt) + 1e-12) - shift["tau"] * prior).argmax(1))
    summary = {"test": test, "choice": choice, "feedback_rows": len(fb), "feedback_repeat": repeat,
               "feedback_share": feedback_share, "prior_shift": shift, "n_features": int(train_x.shape[1]),
               "event": event["id"],
               "old_version": event["version"], "config": dataclasses.asdict(cfg)}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "section_result.json", summary)
    bundle = export_bundle(
        vecs, model, labels, fb, {"split": "test", "headline": "accuracy",
                                  "values": {**test, "test_packages": int(len(ys["test"]))}},
        provenance("p06_contrastive", run_dir, "debian-packages", int(prov.get("split_seed", 0)), cfg.seed,
                   dataclasses.asdict(cfg)),
        old.manifest["name"], f"retrain-{event['id']}", False, root=old.path.parent.parent,
        shift=shift["tau"] * prior)
    return {"bundle": str(bundle.path), "run_dir": str(run_dir), "test_acc": test["accuracy"],
            "feedback_rows": len(fb), "feedback_repeat": repeat, "epochs": cfg.epochs, "val_epoch": choice["epoch"],
            "seconds": round(time.perf_counter() - t0, 1)}
