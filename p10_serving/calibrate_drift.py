"""Full drift calibration: false-alarm and detection rates of the monitor's tests, per scenario and shift size,
over many windows and several reference draws. Writes calibration.json and calibration.png (detection rate
against shift size). The tests (tests/test_drift.py) run a small fixed-seed version of the same code.

    .venv/bin/python p10_serving/calibrate_drift.py artifacts/fashion-cnn-demo/quick --out runs/drift-calibration
    .venv/bin/python p10_serving/calibrate_drift.py artifacts/fashion-anomaly-demo/quick --normal-class 0
    .venv/bin/python p10_serving/calibrate_drift.py BUNDLE --texts queries.txt --other-texts other.txt
    .venv/bin/python p10_serving/calibrate_drift.py --toy --windows 20       # untrained toy bundles (needs torch)
    .venv/bin/python p10_serving/calibrate_drift.py BUNDLE --choose --texts val.txt --other-texts shakespeare.txt

--choose compares candidate per-row out-of-domain scores of a text classifier (choose.json) on a choosing set
(validation descriptions vs Shakespeare speeches), kept apart from the set the calibration reports (Bible verses).

--append keeps the results already in OUT/calibration.json (other bundles), so bundles that need different
--texts can run one at a time into one table and plot (p10_serving/calibration_texts.py writes the p06 texts).

Image bundles get Fashion-MNIST validation + test rows (never training rows); the reference is drawn from
them, so windows are always distinct from the reference's rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from dlm_core.predictors import load_predictor
from p10_serving.tools.calibration import image_calibration, ood_candidates, other_domain_texts, text_calibration


def merge(runs: list[dict]) -> dict:
    """Average the rates of runs with different reference draws (equal window counts)."""
    out = {k: v for k, v in runs[0].items() if k not in ("none", "scenarios", "seed")}
    out["seeds"] = [r["seed"] for r in runs]

    def avg(rows):
        keys = ("alert_rate", "warn_or_alert_rate")
        res = {"windows": sum(r["windows"] for r in rows), **{k: float(np.mean([r[k] for r in rows])) for k in keys}}
        res["signal_alert_rate"] = {s: float(np.mean([r["signal_alert_rate"].get(s, 0) for r in rows]))
                                    for s in rows[0]["signal_alert_rate"]}
        return res

    out["none"] = avg([r["none"] for r in runs])
    out["scenarios"] = {name: [{"size": row["size"], **avg([r["scenarios"][name][i] for r in runs])}
                               for i, row in enumerate(rows)] for name, rows in runs[0]["scenarios"].items()}
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["model"], s) for r in results for s in r["scenarios"]})
    cols = min(len(panels), 4)
    rows_ = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(3.6 * cols, 3.2 * rows_), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (model, scenario) in zip(axes.flat, panels):
        r = [r for r in results if r["model"] == model][0]
        rows = r["scenarios"][scenario]
        ax.plot([str(x["size"]) for x in rows], [x["alert_rate"] for x in rows], "o-", label="alert")
        ax.plot([str(x["size"]) for x in rows], [x["warn_or_alert_rate"] for x in rows], "s--", alpha=0.6,
                label="warn or alert")
        ax.axhline(0.9, color="g", lw=0.8, ls=":")
        ax.axhline(r["none"]["alert_rate"], color="r", lw=0.8, label=f"false alarms {r['none']['alert_rate']:.1%}")
        ax.set(title=f"{model}: {scenario}", xlabel="shift size", ylim=(-0.02, 1.02), ylabel="windows alerting")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundles", nargs="*", help="bundle folders (image classifiers, anomaly detectors, text models)")
    ap.add_argument("--toy", action="store_true", help="calibrate untrained toy bundles (dlm_core.testing)")
    ap.add_argument("--windows", type=int, default=100, help="windows per shift size and reference (default: 100)")
    ap.add_argument("--null-windows", type=int, default=None, help="no-shift windows per reference (default: as many)")
    ap.add_argument("--window", type=int, default=200, help="rows per window (default: 200, the minimum for a verdict)")
    ap.add_argument("--ref-rows", type=int, default=1000, help="reference rows (default: 1000)")
    ap.add_argument("--seeds", type=int, default=3, help="reference draws (default: 3)")
    ap.add_argument("--normal-class", type=int, default=0, help="anomaly detectors' normal class; class_mix's class")
    ap.add_argument("--texts", help="in-domain queries for a text bundle, one a line")
    ap.add_argument("--other-texts", help="queries from another domain, one a line")
    ap.add_argument("--out", default="runs/drift-calibration", help="folder for calibration.json/.png")
    ap.add_argument("--append", action="store_true", help="keep the other bundles' results in OUT/calibration.json")
    ap.add_argument("--choose", action="store_true",
                    help="text classifiers: compare candidate out-of-domain scores on --texts / --other-texts "
                         "(a choosing set) into OUT/choose.json instead of calibrating")
    args = ap.parse_args()
    if args.choose:
        texts, other = (Path(f).read_text().splitlines() for f in (args.texts, args.other_texts))
        found = [ood_candidates(load_predictor(b), texts, other, ref_rows=args.ref_rows, seeds=range(args.seeds))
                 for b in args.bundles]
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "choose.json").write_text(json.dumps({"args": vars(args), "results": found}, indent=1))
        for r in found:
            print(f"{r['model']} {r['version']}: {r['in_domain_rows']} in-domain vs {r['other_rows']} other rows")
            for name, v in r["scores"].items():
                print(f"  {name:40s} AUROC {v['auroc']:.3f}  other past the threshold {v['other_past_threshold']:.1%}"
                      f"  in-domain {v['in_domain_past_threshold']:.1%}")
        print(f"wrote {out / 'choose.json'}")
        return

    paths = list(args.bundles)
    if args.toy:
        from dlm_core.testing import toy_image_bundle, toy_text_bundle

        root = tempfile.mkdtemp()
        paths += [toy_image_bundle(root, "image-classification", name="toy-img"),
                  toy_image_bundle(root, "anomaly-detection", name="toy-anom"),
                  toy_text_bundle(root, "text-retrieval", name="toy-search")]
    images = None
    results = []
    for path in paths:
        p = load_predictor(path)
        start = time.time()
        kw = dict(windows=args.windows, null_windows=args.null_windows, window=args.window, ref_rows=args.ref_rows)
        if p.task in ("image-classification", "anomaly-detection"):
            if images is None:
                from dlm_core.data import load_dataset

                ds = load_dataset("fashion-mnist")
                images = np.concatenate([ds.val.x, ds.test.x]), np.concatenate([ds.val.y, ds.test.y])
            runs = [image_calibration(p, *images, normal_class=args.normal_class, seed=s, **kw)
                    for s in range(args.seeds)]
        elif p.task in ("text-classification", "text-retrieval"):
            if args.texts:
                texts = Path(args.texts).read_text().splitlines()
                other = Path(args.other_texts).read_text().splitlines()
            else:  # toy bundles: their own vocabulary against another
                from dlm_core.testing import toy_texts

                texts, other = toy_texts(20_000, seed=1), other_domain_texts(2000)
            runs = [text_calibration(p, texts, other, seed=s, **kw) for s in range(args.seeds)]
        else:
            print(f"skipping {path}: no calibration scenario for task {p.task}")
            continue
        r = merge(runs)
        r["seconds"] = round(time.time() - start, 1)
        r["args"] = {k: v for k, v in vars(args).items() if k not in ("bundles", "out", "append")}
        results.append(r)
        print(f"{p.name} ({p.task}): false alarms {r['none']['alert_rate']:.1%} of {r['none']['windows']} windows")
        for name, rows in r["scenarios"].items():
            print(f"  {name:13s} " + "  ".join(f"{x['size']}: {x['alert_rate']:.0%}" for x in rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.append and (out / "calibration.json").exists():
        done = {r["model"] for r in results}
        old = json.loads((out / "calibration.json").read_text())["results"]
        results = [r for r in old if r["model"] not in done] + results
    (out / "calibration.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    if results:
        plot(results, out / "calibration.png")
    print(f"wrote {out / 'calibration.json'} and {out / 'calibration.png'}")


if __name__ == "__main__":
    main()
