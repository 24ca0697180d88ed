"""Console scripts: run_vae_train, run_vae_sample, run_vae_interpolate.

torch and the modules that import it (train, evaluate) are imported inside the mains: `--help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dlm_core.config import ArgumentParser, add_config_args, add_run_args, run_config
from dlm_core.errors import DlmError, cli_entry
from dlm_core.plotting import plt
from dlm_core.runs import RunDir

from .config import PRESETS, VAEConfig
from .data import fixed_binarization, load_images


@cli_entry
def train_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_vae_train", description="Train a convolutional VAE on binarised digits or "
                       "Fashion-MNIST; report test ELBO and IWAE NLL beside a per-pixel Bernoulli baseline.")
    add_run_args(p, PRESETS, "p08_vae")
    add_config_args(p, VAEConfig)
    cfg, run_dir, resume = run_config(VAEConfig, p.parse_args(argv), PRESETS)  # on --resume: the saved config
    from .evaluate import final_evaluation, load_run
    from .train import train

    run = train(cfg, run_dir=run_dir, resume=resume)
    model, cfg = load_run(run)
    final_evaluation(run, model, cfg)
    print(f"run: {run.path}")
    return 0


def _open_run(path: str):
    run = RunDir.open(path)
    if not (run.checkpoint_dir / "best.pt").exists():
        raise DlmError(f"{path} has no trained model (checkpoints/best.pt); train with run_vae_train first")
    from .evaluate import load_run

    return run, *load_run(run)


@cli_entry
def sample_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_vae_sample", description="Draw images from a trained VAE's prior p(z).")
    p.add_argument("run_dir", help="a run folder written by run_vae_train")
    p.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for the PNGs (default: <run_dir>/samples)")
    args = p.parse_args(argv)
    if not 1 <= args.n <= 10000:
        raise DlmError(f"--n {args.n}: ask for between 1 and 10000 samples")
    run, model, cfg = _open_run(args.run_dir)
    import torch

    from .evaluate import image_grid

    out = Path(args.out) if args.out else run.path / "samples"
    out.mkdir(parents=True, exist_ok=True)
    z = torch.randn(args.n, cfg.latent_dim, generator=torch.Generator().manual_seed(args.seed))
    images = model.decode_probs(z)[:, 0].numpy()
    pyplot = plt()
    for i, img in enumerate(images):
        path = out / f"sample_{i}.png"
        pyplot.imsave(path, img, cmap="gray", vmin=0, vmax=1)
        print(f"sample_id: {i} output_saved: {path}")
    grid = image_grid(images, out / "grid.png", min(8, args.n), f"{args.n} samples, seed {args.seed}")
    print(f"grid_saved: {grid}")
    return 0


@cli_entry
def interpolate_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_vae_interpolate",
                       description="Decode the latent path between two test images (linear and slerp).")
    p.add_argument("run_dir", help="a run folder written by run_vae_train")
    p.add_argument("--from", dest="src", type=int, required=True, help="test image index")
    p.add_argument("--to", dest="dst", type=int, required=True, help="test image index")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--mode", choices=["linear", "slerp", "both"], default="both")
    p.add_argument("--out", default=None, help="PNG path (default: <run_dir>/interpolate_<from>_<to>.png)")
    args: argparse.Namespace = p.parse_args(argv)
    if args.steps < 2:
        raise DlmError("--steps must be >= 2")
    run, model, cfg = _open_run(args.run_dir)
    from .evaluate import image_grid, interpolate

    x_test = load_images(cfg.dataset, cfg.seed)["test"][0]
    for idx in (args.src, args.dst):
        if not 0 <= idx < len(x_test):
            raise DlmError(f"test image index {idx} is out of range; use 0..{len(x_test) - 1}")
    x = fixed_binarization(x_test, cfg.seed, "test")
    modes = ["linear", "slerp"] if args.mode == "both" else [args.mode]
    strips = np.concatenate([interpolate(model, x[args.src], x[args.dst], args.steps, m) for m in modes])
    out = Path(args.out) if args.out else run.path / f"interpolate_{args.src}_{args.dst}.png"
    image_grid(strips, out, args.steps, f"test {args.src} -> {args.dst}: {' / '.join(modes)}")
    print(f"from: {args.src} to: {args.dst} steps: {args.steps} modes: {','.join(modes)} output_saved: {out}")
    return 0
