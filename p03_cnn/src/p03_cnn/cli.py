"""Console scripts: run_cnn_train, run_cnn_evaluate, run_cnn_predict, run_cnn_export, run_cnn_ablation.

torch is imported inside each main (with the package's modules that import it: train, evaluate, export, retrain,
ablation; and data, which imports PIL), so `--help` is instant; the light imports are here.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

from dlm_core.config import ArgumentParser, add_config_args, config_from_args, run_config
from dlm_core.data import FASHION_CLASSES
from dlm_core.device import select_device
from dlm_core.distributed import launch_local, local_ranks
from dlm_core.errors import DlmError, cli_entry
from dlm_core.predictors import load_predictor
from dlm_core.retrain import read_event, write_result

from .config import PRESETS, CNNConfig, train_parser


@cli_entry
def train_main(argv=None) -> int:
    """run_cnn_train: the flags are parsed (and the config checked) before torch is imported; the run lives in
    train.py. With more than one process (--procs, on a CPU one per core by default) this process only starts the
    ranks, each `python -m p03_cnn.train` with the same flags (what torchrun also starts), and waits for them."""
    args = train_parser().parse_args(argv)
    if "WORLD_SIZE" not in os.environ:  # not already a rank of torchrun's or ours
        cfg, _, _ = run_config(CNNConfig, args, PRESETS)
        procs = local_ranks(args.procs, cfg.batch_size, cfg.device)
        if procs > 1:
            flags = sys.argv[1:] if argv is None else list(argv)
            return launch_local([sys.executable, "-m", "p03_cnn.train", *flags], procs)
    from .train import run_args

    return run_args(args)


@cli_entry
def evaluate_main(argv=None) -> int:
    p = ArgumentParser(prog="run_cnn_evaluate", description="Test a run's best checkpoint: confusion matrix, "
                       "per-class precision/recall, most confidently wrong images, filters, report.md")
    p.add_argument("run_dir", help="a folder under runs/p03_cnn/")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    args = p.parse_args(argv)
    from .evaluate import evaluate_run

    device = select_device(args.device)
    out = evaluate_run(args.run_dir, device=str(device))
    for row in out["top_confusions"][:3]:
        print(f"confused: {row['true']} -> {row['predicted']} ({row['count']} test images)")
    print(f"report: {args.run_dir.rstrip('/')}/report.md")
    return 0


@cli_entry
def predict_main(argv=None) -> int:
    p = ArgumentParser(prog="run_cnn_predict", description="Classify image files with a run's best checkpoint "
                       "or with an exported bundle (any size: converted to grey and resized to 28x28)")
    p.add_argument("run_dir", help="a folder under runs/p03_cnn/ (or a checkpoint .pt), or a bundle folder "
                   "artifacts/fashion-cnn/<version> (then ONNX Runtime answers, through dlm_core.predictors)")
    p.add_argument("images", nargs="+", help="PNG/JPEG files")
    p.add_argument("--top", type=int, default=3, help="classes shown per image (default: 3)")
    p.add_argument("--invert", action="store_true", help="invert grey levels (dark object on a white background)")
    args = p.parse_args(argv)
    from .data import SIZE, load_image, normalize

    if (Path(args.run_dir) / "manifest.json").is_file():
        pred = load_predictor(args.run_dir)
        pred.self_check()
        loaded = [load_image(path, args.invert) for path in args.images]  # every file checked before any output
        probs_rows = [[(t["label"], t["probability"]) for t in r["top_k"]]
                      for r in pred.predict([a[0] for a, _ in loaded])]
    else:
        from .evaluate import load_run, predict_logits, softmax
        from .model import with_tta

        model, cfg, state = load_run(args.run_dir)
        model = with_tta(model, cfg.tta_flip)
        classes = state.get("classes") or FASHION_CLASSES
        loaded = [load_image(path, args.invert) for path in args.images]
        probs = softmax(predict_logits(model, normalize(np.concatenate([a for a, _ in loaded]))))
        probs_rows = [[(classes[i], pr[i]) for i in np.argsort(-pr)] for pr in probs]
    for path, (_, size), row in zip(args.images, loaded, probs_rows):
        note = "" if size == (SIZE, SIZE) else f"  (resized from {size[0]}x{size[1]})"
        print(f"{path}: " + ", ".join(f"{c} {pr:.3f}" for c, pr in row[: max(1, args.top)]) + note)
    return 0


@cli_entry
def export_main(argv=None) -> int:
    p = ArgumentParser(prog="run_cnn_export", description="Export a run's best model as an ONNX bundle "
                       "(artifacts/<name>/<version>/) after checking ONNX Runtime against torch")
    p.add_argument("run_dir", help="a folder under runs/p03_cnn/")
    p.add_argument("--name", default="fashion-cnn", help="bundle name (default: fashion-cnn)")
    p.add_argument("--version", default=None, help="bundle version (default: the run's folder name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle of that version")
    args = p.parse_args(argv)
    from .export import export_run

    out = export_run(args.run_dir, args.name, args.version, args.overwrite)
    print(f"bundle: {out['bundle']}  parity max abs diff (ORT vs torch): {out['parity_max_abs_diff']:.2e}  "
          f"test_acc: {out['test_acc']}")
    return 0


@cli_entry
def retrain_main(argv=None) -> int:
    p = ArgumentParser(prog="run_cnn_retrain", description="Retrain the serving CNN from a retraining event "
                       "(dlm-retrain-event/1, written by run_serve): warm start from the serving run, train split + "
                       "the labelled feedback, export a bundle next to the serving one, write the event's result "
                       "file for the server to gate and swap")
    p.add_argument("event", help="the event file (RETRAIN_DIR/events/<id>.json)")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default: 2)")
    p.add_argument("--lr-scale", type=float, default=0.3, help="the run's peak learning rate x this (default: 0.3)")
    p.add_argument("--feedback-share", type=float, default=0.25,
                   help="the feedback's share of each epoch, by repetition (default: 0.25)")
    p.add_argument("--runs-root", default=None, help="where the new run goes (default: next to the serving run)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.lr_scale <= 0 or not 0 < args.feedback_share < 1:
        raise DlmError("need --epochs >= 1, --lr-scale > 0 and 0 < --feedback-share < 1")
    from .retrain import retrain

    event = read_event(args.event)
    try:
        out = retrain(args.event, args.epochs, args.lr_scale, args.feedback_share, args.runs_root)
    except Exception as err:  # the server waits for a result file: it must hear about every failure
        write_result(event, error=str(err) if isinstance(err, DlmError) else f"{type(err).__name__}: {err}")
        raise
    write_result(event, **out)
    print(f"bundle: {out['bundle']} (test_acc {out['test_acc']}, {out['seconds']} s)", flush=True)
    return 0


@cli_entry
def ablation_main(argv=None) -> int:
    p = ArgumentParser(prog="run_cnn_ablation", description="Augmentation on vs off, same budget, several seeds: "
                       "mean and spread of test accuracy and the train/val gap curves")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--out", default=None, help="output folder (default: runs/p03_cnn_ablation/<timestamp>)")
    add_config_args(p, CNNConfig, exclude=("augment", "seed"))
    args = p.parse_args(argv)
    from .ablation import run_ablation

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise DlmError(f"--seeds {args.seeds!r}: give integers like 0,1,2") from None
    base = config_from_args(CNNConfig, args, base=dataclasses.replace(
        CNNConfig(), epochs=8, width=16, train_subset=5000, baseline=False))
    run_ablation(base, seeds, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
