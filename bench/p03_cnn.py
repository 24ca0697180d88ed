"""p03_cnn bench: training throughput (images/s) of the default config, in float32 and in the bf16 autocast the
default trains in on a CPU with native bf16, and inference latency at batch 1 and 64,
torch eager vs ONNX Runtime (same model, interleaved runs, medians, ORT thread spinning off). Both sides run the
bundle's serving graph: with the default's flip averaging, that is two passes of the network per image.

    python bench/p03_cnn.py [--bundle artifacts/fashion-cnn/<version>] [--seed-runs RUN_DIR ...]

Uses the latest `fashion-cnn` bundle (exported from the default run) when present, so `test_acc` is that run's,
and reads that run's own training speed (one rank per core on a CPU) from its metrics beside the one-process step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from dlm_core.benchmark import interleaved_medians, machine, unshadow, write_result
from dlm_core.io import read_json
from dlm_core.runs import RunDir

unshadow(__file__, "p03_cnn")


def run_throughput(run_dir: Path) -> dict:
    """The bundle's own training run as it ran (the default: one rank per core): median images/s over its epochs
    (all ranks together, training only), from its metrics.jsonl; {} when the run folder is not on this machine."""
    run = RunDir(run_dir)
    rows = run.metrics()
    if not rows or not (run_dir / "results.json").is_file():
        return {}
    return {"median_images_per_s": float(np.median([r["images_per_s"] for r in rows])),
            "median_epoch_seconds": float(np.median([r["seconds"] for r in rows])),
            "world_size": read_json(run_dir / "results.json").get("world_size"),
            "batch_size": run.load_config().get("batch_size"), "run_dir": str(run_dir)}


def seed_runs(run_dirs: list[str]) -> dict:
    """The default's accuracy over seeds, read from the runs' own results.json (nothing is retrained here)."""
    if not run_dirs:
        return {}
    rows = []
    for d in run_dirs:
        r, cfg = read_json(Path(d) / "results.json"), RunDir.open(d).load_config()
        rows.append({"run_dir": d, "seed": cfg["seed"], "test_acc": r["test_acc"], "best_val_acc": r["best_val_acc"],
                     "baseline_logreg_test_acc": r.get("baseline_logreg_test_acc"), "world_size": r.get("world_size"),
                     "epochs": cfg["epochs"], "total_seconds": r.get("total_seconds")})
    return {"default_seed_runs": rows, "default_mean_test_acc": float(np.mean([r["test_acc"] for r in rows])),
            "default_mean_best_val_acc": float(np.mean([r["best_val_acc"] for r in rows]))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bundle", default=None)
    p.add_argument("--rounds", type=int, default=60, help="interleaved rounds (one call of each candidate each)")
    p.add_argument("--seed-runs", nargs="*", default=[], metavar="RUN_DIR",
                   help="finished runs of the default command (one per seed) to record beside the bench: each "
                        "one's test and best val accuracy and seconds, from its results.json, and their mean")
    args = p.parse_args()

    from dlm_core.bundle import latest_bundle, load_bundle
    from dlm_core.device import autocast, cpu_has_native_bf16, set_cpu_threads, uses_bf16
    from dlm_core.errors import DlmError
    from dlm_core.export import onnx_export
    from dlm_core.predictors import ort_session
    from p03_cnn.config import CNNConfig
    from p03_cnn.data import build_augment
    from p03_cnn.export import ServingGraph
    from p03_cnn.model import build_model, model_for
    from p03_cnn.train import WeightEMA, make_optimizer

    threads = set_cpu_threads()
    cfg = CNNConfig()
    test_acc, source, run_speed = None, "untrained model (no fashion-cnn bundle found)", {}
    try:
        bundle = load_bundle(args.bundle or latest_bundle("fashion-cnn"))
        bcfg = bundle.manifest["provenance"]["config"]
        run_speed = run_throughput(Path(bundle.manifest["provenance"]["run_dir"]))
        model = build_model(bcfg.get("arch", cfg.arch), 10, bcfg.get("width", cfg.width), bcfg.get("blocks", 1),
                            last_width=bcfg.get("last_width", 0))
        model.load_state_dict(torch.load(bundle.file("weights.pt"), weights_only=True))
        tta = bool(bcfg.get("tta_flip", False))
        onnx_path = bundle.graph_file("model")
        test_acc = bundle.manifest["metrics"]["values"]["accuracy"]
        source = str(bundle.path)
    except DlmError:
        model = model_for(cfg)
        tta = cfg.tta_flip
        onnx_path = Path(tempfile.mkdtemp()) / "model.onnx"
        onnx_export(ServingGraph(model.eval(), tta), (torch.zeros(2, 1, 28, 28),), onnx_path, ["image"],
                    ["logits", "embedding"], ({0: torch.export.Dim("batch")},))
    graph = ServingGraph(model, tta).eval()  # what the ONNX graph computes (flip averaging when tta)
    sess = ort_session(onnx_path, threads=threads)

    # training throughput: the default config's step (augmentation + forward + backward + SGD + EMA), batch 128
    train_model = model_for(cfg).to(memory_format=torch.channels_last)
    opt = make_optimizer(cfg, train_model)
    aug = build_augment(cfg.crop_padding, cfg.erasing_p)
    ema = WeightEMA(train_model, cfg.ema) if cfg.ema > 0 else None
    xb = torch.randn(cfg.batch_size, 1, 28, 28)
    yb = torch.randint(0, 10, (cfg.batch_size,))

    def train_step(bf16: bool):
        def step():
            x = aug(xb).contiguous(memory_format=torch.channels_last)
            with autocast(torch.device("cpu"), bf16):
                logits = train_model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update(1000)
        return step

    precisions = {"float32": train_step(False), **({"bf16": train_step(True)} if cpu_has_native_bf16() else {})}
    default = "bf16" if uses_bf16(torch.device("cpu"), cfg.cpu_bf16) else "float32"

    inputs = {n: np.random.default_rng(n).standard_normal((n, 1, 28, 28)).astype(np.float32) for n in (1, 64)}

    def torch_fn(n):
        x = torch.from_numpy(inputs[n])

        def f():
            with torch.inference_mode():
                graph(x)
        return f

    def ort_fn(n):
        return lambda: sess.run(None, {"image": inputs[n]})

    # interleaved: contention from other jobs hits every candidate alike
    med = interleaved_medians({**{f"train_{p}": f for p, f in precisions.items()},
                               **{f"{side}_b{n}": fn(n) for n in (1, 64)
                                  for side, fn in (("torch", torch_fn), ("ort", ort_fn))}},
                              rounds=args.rounds, warmup=3)
    train_s = {p: med.pop(f"train_{p}") for p in precisions}
    ms = {k: v * 1000 for k, v in med.items()}
    result = {
        "bench": "p03_cnn: ResNet-small (width 32) on Fashion-MNIST 28x28; inference latency torch eager vs "
                 "ONNX Runtime (CPU EP, allow_spinning=0), medians of interleaved runs",
        "machine": machine(),
        "ours": {"ort_latency_ms_b1": ms["ort_b1"], "ort_latency_ms_b64": ms["ort_b64"]},
        "peer": {"torch_latency_ms_b1": ms["torch_b1"], "torch_latency_ms_b64": ms["torch_b64"]},
        "ratio": ms["ort_b1"] / ms["torch_b1"],
        "ratio_b64": ms["ort_b64"] / ms["torch_b64"],
        "goal": "ratio = ORT / torch latency at batch 1; lower is better (< 1: ORT faster)",
        "train_images_per_s": cfg.batch_size / train_s[default],
        "train_images_per_s_by_precision": {p: cfg.batch_size / t for p, t in train_s.items()},
        "train_precision_default": "bf16 autocast" if default == "bf16" else "float32",
        "train_images_per_s_bundle_run": run_speed,
        **seed_runs(args.seed_runs),
        "test_acc": test_acc,
        "model_source": source,
        "flip_tta_in_graph": tta,
    }
    write_result("p03_cnn", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
