"""Console scripts: run_anomaly_train, run_anomaly_detector, run_anomaly_export.

No torch at module level: `--help` stays instant. torch and the modules that import it (train, sweeps, evaluate,
export, model) are imported inside the mains; everything else is imported here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dlm_core.config import ArgumentParser, add_config_args, add_run_args, run_config
from dlm_core.errors import DlmError, cli_entry
from dlm_core.io import read_json, write_text
from dlm_core.runs import RunDir, print_metrics

from .config import DATASETS, PRESETS, AEConfig, base_config
from .data import load, point_scores, preprocess, windows


# --- run_anomaly_train -------------------------------------------------------------------------------------
def train_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_anomaly_train", description="Train an autoencoder on normal data only and "
                       "detect anomalies by reconstruction error (threshold at a target validation FPR).")
    add_run_args(p, PRESETS, "p07_autoencoder", "quick: seconds; sweep: the reduced per-class budget of the "
                 "10-class sweep (default: default)")
    p.add_argument("--all-classes", action="store_true", help="fashion-oneclass: one detector per class (0-9) "
                   "and the per-class ROC-AUC table vs IsolationForest and PCA")
    p.add_argument("--sweep-latent", default=None, metavar="A,B,...", help="train one model per bottleneck size "
                   "and plot validation error and test ROC-AUC against it")
    add_config_args(p, AEConfig)
    return p


@cli_entry
def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    from .train import PROJECT, run_experiment

    if (args.resume or args.run_dir) and (args.all_classes or args.sweep_latent):
        raise DlmError("--all-classes and --sweep-latent make one run per model; drop --resume and --run-dir")
    base = None if args.resume else base_config(args.preset or "default", getattr(args, "dataset", "fashion-oneclass"))
    cfg, run_dir, resume = run_config(AEConfig, args, PRESETS, base=base)  # on --resume: the saved config
    if resume:
        result = run_experiment(cfg, run=RunDir.at(run_dir, cfg), resume=True)
        _print_result(result)
        return 0
    if args.sweep_latent:
        from .sweeps import latent_sweep

        dims = _int_list(args.sweep_latent, "--sweep-latent")
        latent_sweep(cfg, dims)
        return 0
    if args.all_classes:
        if cfg.dataset != "fashion-oneclass":
            raise DlmError("--all-classes is for --dataset fashion-oneclass")
        from .sweeps import all_classes

        all_classes(cfg)
        return 0
    run = RunDir.at(run_dir, cfg) if run_dir is not None else RunDir.create(PROJECT, cfg)
    print(f"run: {run.path}", flush=True)
    result = run_experiment(cfg, run=run)
    _print_result(result)
    print_metrics(run=result["run_dir"])
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise DlmError(f"{flag} {text!r}: give comma-separated integers, e.g. 4,8,16,32") from None
    if not vals or min(vals) < 1:
        raise DlmError(f"{flag} {text!r}: give positive integers, e.g. 4,8,16,32")
    return vals


def _print_result(r: dict) -> None:
    from .evaluate import BASELINES

    ae = r["autoencoder"]
    print(f"threshold: {ae['threshold']:.4g} anomalies_detected: {ae['tp'] + ae['fp']} of {r['n_test']}  "
          f"(validation FPR target {100 * r['fpr_target']:g}%, test FPR {ae['fpr']:.4f})", flush=True)
    line = f"ROC-AUC {ae['roc_auc']:.4f}  PR-AUC {ae['pr_auc']:.4f}"
    for name, label in BASELINES.items():
        if name in r:
            line += f"   {label} {r[name]['roc_auc']:.4f} / {r[name]['pr_auc']:.4f}"
    print(line, flush=True)
    print(f"F1 at threshold {ae['f1']:.3f}  (diagnostic only, F1-optimal test threshold: F1 "
          f"{ae['diagnostic_best_f1']:.3f})", flush=True)


# --- run_anomaly_detector ----------------------------------------------------------------------------------
def detector_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_anomaly_detector", description="Score inputs with a trained detector and print "
                       "the threshold and the anomalies found. Without --input: the run's own test split.")
    p.add_argument("run_dir", help="a finished run of run_anomaly_train (runs/p07_autoencoder/<run>)")
    p.add_argument("--input", nargs="+", default=None, metavar="FILE",
                   help="one .npy or .csv file, or image files (.png/.jpg, 28x28 grey); raw values, "
                        "unpreprocessed (pixels 0..255, table rows, or a series)")
    p.add_argument("--output", default=None, help="write index,score,anomaly as CSV here")
    p.add_argument("--show", type=int, default=10, help="how many flagged inputs to list (default: 10)")
    return p


def read_input(paths: list[str], spec: dict):
    files = [Path(p) for p in paths]
    for f in files:
        if not f.is_file():
            raise DlmError(f"--input {f}: no such file")
    suffixes = {f.suffix.lower() for f in files}
    if suffixes <= {".png", ".jpg", ".jpeg", ".bmp"}:
        if spec["kind"] != "image":
            raise DlmError(f"image files given, but this run is a {spec['kind']} detector; pass .npy or .csv")
        arrays = []
        for f in files:
            img = np.asarray(Image.open(f).convert("L"))
            if img.shape != (28, 28):
                raise DlmError(f"--input {f}: image is {img.shape[1]}x{img.shape[0]}, the detector needs 28x28 grey")
            arrays.append(img)
        return np.stack(arrays)
    if len(files) != 1:
        raise DlmError("--input: pass one .npy/.csv file, or only image files")
    f = files[0]
    if f.suffix.lower() == ".npy":
        try:
            return np.load(f, allow_pickle=False)
        except ValueError as err:
            raise DlmError(f"--input {f}: not a numeric .npy array ({err})") from None
    if f.suffix.lower() == ".csv":
        lines = [ln for ln in f.read_text().splitlines() if ln.strip()]
        if not lines:
            raise DlmError(f"--input {f}: empty CSV")
        first = [c.strip() for c in lines[0].split(",")]
        if not all(_is_number(c) for c in first):  # a header row: check the column names
            want = spec.get("features")
            if want is not None and first != want:
                raise DlmError(f"--input {f}: columns {first} do not match the training columns {want}")
            lines = lines[1:]
        try:
            rows = [[float(c) for c in ln.split(",")] for ln in lines]
            arr = np.array(rows, dtype=np.float64)
        except ValueError:
            raise DlmError(f"--input {f}: non-numeric or ragged rows; expected a numeric CSV") from None
        return arr
    raise DlmError(f"--input {f}: use .npy, .csv or image files (.png/.jpg)")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


@cli_entry
def detector_main(argv: list[str] | None = None) -> int:
    args = detector_parser().parse_args(argv)
    import torch

    from .evaluate import BASELINES, load_run, metrics_at, unit_scores
    from .model import Scorer, image_scores, squared_errors

    torch.set_num_threads(2)
    cfg, spec, model = load_run(args.run_dir)
    threshold = spec["threshold"]
    blur = spec.get("error_blur", 0.0)
    scorer = Scorer(model, blur, spec.get("code_score"))
    if args.input is None:
        prep = load(cfg)
        scores = (image_scores(scorer, prep.x_test) if spec["kind"] == "image"
                  else unit_scores(prep, squared_errors(model, prep.x_test, blur_sigma=blur), "test"))
        ids, y = prep.test_ids, prep.y_test
        source = f"the run's test split ({cfg.dataset})"
    else:
        raw = read_input(args.input, spec)
        if not np.issubdtype(np.asarray(raw).dtype, np.number):
            raise DlmError("--input holds non-numeric values")
        x = preprocess(raw, spec)
        if not np.isfinite(x).all():
            raise DlmError("--input holds NaN or Inf values")
        if spec["kind"] == "series":
            x = windows(x, spec["window"])
        if spec["kind"] == "image":
            scores = image_scores(scorer, x)
        else:
            sq = squared_errors(model, x, blur_sigma=blur)
            series = spec["kind"] == "series"
            scores = point_scores(sq, len(sq) + spec["window"] - 1) if series else sq.mean(1).astype(np.float64)
        ids, y = np.arange(len(scores)), None
        source = ", ".join(args.input) if len(args.input) <= 3 else f"{len(args.input)} files"
    flagged = scores > threshold
    unit = {"image": "images", "tabular": "rows", "series": "points"}[spec["kind"]]
    print(f"input: {source}")
    print(f"threshold: {threshold:.4g} anomalies_detected: {int(flagged.sum())} of {len(scores)} {unit}  "
          f"(validation FPR target {100 * spec['fpr_target']:g}%)", flush=True)
    top = np.argsort(-scores)[: args.show]
    top = top[flagged[top]]
    if len(top):
        print("highest-scoring flagged: " + ", ".join(f"{int(ids[i])}:{scores[i]:.3g}" for i in top))
    if y is not None:
        m = metrics_at(y, scores, threshold)
        line = f"ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f}"
        res_path = Path(args.run_dir) / "results.json"
        if res_path.is_file():
            res = read_json(res_path)
            for name, label in BASELINES.items():
                if name in res:
                    line += f"   {label} {res[name]['roc_auc']:.4f} / {res[name]['pr_auc']:.4f}"
        print(line)
        print(f"precision {m['precision']:.3f} recall {m['recall']:.3f} F1 {m['f1']:.3f} test FPR {m['fpr']:.4f}")
    if args.output:
        body = "index,score,anomaly\n" + "".join(f"{int(i)},{s:.6g},{int(f)}\n" for i, s, f in zip(ids, scores,
                                                                                                   flagged))
        write_text(args.output, body)
        print(f"scores: {args.output}")
    return 0


# --- run_anomaly_export ------------------------------------------------------------------------------------
@cli_entry
def export_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_anomaly_export", description="Export an image detector run as a dlm-bundle/1 "
                       "(artifacts/<name>/<version>/: ONNX returning per-image error and code; the validation-chosen "
                       "threshold in the manifest's postprocess).")
    p.add_argument("run_dir", help="a finished fashion-oneclass run")
    p.add_argument("--name", default="fashion-anomaly", help="bundle name (default: fashion-anomaly)")
    p.add_argument("--version", default=None, help="bundle version (default: the run folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle of that version")
    args = p.parse_args(argv)
    from .export import export_bundle

    bundle, max_abs = export_bundle(args.run_dir, args.version, args.overwrite, name=args.name)
    print(f"bundle: {bundle.path}")
    print(f"onnx parity: max |torch - onnxruntime| = {max_abs:.3g} on the reference inputs")
    return 0


if __name__ == "__main__":
    sys.exit(train_main())

__all__ = ["DATASETS", "detector_main", "export_main", "train_main"]
