"""Retraining from a server's event (dlm_core.retrain): the p03 trainer, warm-started from the serving model's
run, on the original training split plus the labelled feedback the server collected; then an export under the
bundle contract, next to the serving bundle. The server gates and swaps it; nothing here touches serving.

    run_cnn_retrain runs/retrain/events/<id>.json [--epochs 2] [--lr-scale 0.3]

The recipe: the serving run's own config (so the architecture and data are the same), its best weights as the
start, the feedback repeated so that it is about `feedback_share` of each epoch, a short OneCycle at a lower
peak learning rate, no baseline. The new bundle's drift reference is the feedback itself (the traffic the new
model is adapted to), so its drift monitor does not keep alerting on the shift it was retrained for.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from dlm_core.bundle import MIN_DRIFT_ROWS, load_bundle
from dlm_core.errors import DlmError
from dlm_core.retrain import feedback, read_event

from .config import CNNConfig
from .export import export_run
from .train import train


def retrain_config(base: dict, extra_path: str, rows: int, run_dir: str, epochs: int, lr_scale: float,
                   feedback_share: float, seed: int) -> CNNConfig:
    cfg = CNNConfig(**{k: v for k, v in base.items() if k in CNNConfig.__dataclass_fields__})
    n_train = cfg.train_subset or 55_000
    repeat = max(1, round(feedback_share * n_train / ((1 - feedback_share) * rows)))
    return dataclasses.replace(cfg, epochs=epochs, lr=cfg.lr * lr_scale, init_from=run_dir, extra_data=extra_path,
                               extra_repeat=repeat, baseline=False, patience=0, seed=seed)


def retrain(event_path, epochs: int = 2, lr_scale: float = 0.3, feedback_share: float = 0.25,
            runs_root: str | None = None) -> dict:
    t0 = time.perf_counter()
    event = read_event(event_path)
    if event["task"] != "image-classification":
        raise DlmError(f"run_cnn_retrain retrains image classifiers; event {event['id']} is for a {event['task']}")
    old = load_bundle(event["bundle"])
    prov = old.manifest["provenance"]
    base_run = Path(prov["run_dir"])
    if not (base_run / "checkpoints").is_dir():
        raise DlmError(f"the serving bundle's run {base_run} is not here (no checkpoints/); retraining starts from it")
    x, y = feedback(event)
    if len(y) < MIN_DRIFT_ROWS:
        raise DlmError(f"{len(y)} feedback rows; retraining needs at least {MIN_DRIFT_ROWS} (they become the new "
                       "bundle's drift reference)")
    cfg = retrain_config(prov["config"], event["feedback"]["train"], len(y), str(base_run), epochs, lr_scale,
                         feedback_share, int(prov.get("seed", 0)))
    run_dir = Path(runs_root or base_run.parent) / f"retrain-{event['id']}"
    print(f"retraining {event['model']} {event['version']} ({event['reason']}): {len(y)} feedback rows x "
          f"{cfg.extra_repeat}, {epochs} epochs from {base_run} -> {run_dir}", flush=True)
    result = train(cfg, run_dir=run_dir)
    out = export_run(run_dir, name=old.manifest["name"], version=f"retrain-{event['id']}", drift_inputs=x,
                     root=old.path.parent.parent)
    return {"bundle": out["bundle"], "run_dir": str(run_dir), "test_acc": result.get("test_acc"),
            "feedback_rows": int(len(y)), "extra_repeat": cfg.extra_repeat, "epochs": epochs,
            "seconds": round(time.perf_counter() - t0, 1)}
