"""Held-out evaluation (test ELBO, IWAE NLL, a factorised-Bernoulli baseline), the plots and report.md."""

from __future__ import annotations

import os

import numpy as np
import torch

from dlm_core.checkpoint import Checkpointer
from dlm_core.plotting import plot_curves, plt, save_figure
from dlm_core.runs import RunDir, print_metrics

from .config import VAEConfig
from .data import fixed_binarization, load_images
from .model import VAE
from .train import evaluate_elbo


def load_run(run: str | os.PathLike | RunDir, device="cpu") -> tuple[VAE, VAEConfig]:
    """(model in eval mode, config) from a run folder (a path or a RunDir)'s best checkpoint."""
    run = run if isinstance(run, RunDir) else RunDir.open(run)
    cfg = VAEConfig(**run.load_config())
    state = Checkpointer(run.checkpoint_dir).best(map_location=device)
    model = VAE(cfg.latent_dim, cfg.channels, cfg.hidden).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, cfg


def bernoulli_baseline_nll(x_train_grey: np.ndarray, x_test_bin: np.ndarray) -> float:
    """NLL (nats/image) of independent per-pixel Bernoullis fitted on the training grey levels."""
    p = np.clip(x_train_grey.mean(0), 1e-3, 1 - 1e-3)
    ll = x_test_bin * np.log(p) + (1 - x_test_bin) * np.log1p(-p)
    return float(-ll.reshape(len(x_test_bin), -1).sum(1).mean())


@torch.no_grad()
def iwae_nll(model: VAE, x: np.ndarray, k: int, seed: int, batch_size: int = 50) -> float:
    torch.manual_seed(seed)
    bounds = [model.iwae_bound(torch.from_numpy(x[i:i + batch_size]), k) for i in range(0, len(x), batch_size)]
    return float(-torch.cat(bounds).mean())


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: keeps the norm typical of Gaussian samples instead of shrinking mid-way."""
    omega = torch.arccos(torch.clamp((a / a.norm()) @ (b / b.norm()), -1.0, 1.0))
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def interpolate(model: VAE, x_a: np.ndarray, x_b: np.ndarray, steps: int, mode: str) -> np.ndarray:
    """Decoded images along the path between the posterior means of two images: (steps, 28, 28)."""
    mu, _ = model.encoder(torch.from_numpy(np.stack([x_a, x_b])))
    ts = np.linspace(0, 1, steps)
    zs = torch.stack([(1 - t) * mu[0] + t * mu[1] if mode == "linear" else slerp(mu[0], mu[1], float(t))
                      for t in ts])
    return model.decode_probs(zs)[:, 0].numpy()


def image_grid(images: np.ndarray, path, ncols: int, title: str = "", row_labels=None):
    pyplot = plt()
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = pyplot.subplots(nrows, ncols, figsize=(ncols * 0.9, nrows * 0.9 + (0.3 if title else 0)),
                                squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        axes.flat[i].imshow(img, cmap="gray", vmin=0, vmax=1)
    if row_labels:
        for r, label in enumerate(row_labels):
            axes[r, 0].set_title(label, fontsize=7, loc="left")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def final_evaluation(run: RunDir, model: VAE, cfg: VAEConfig) -> dict:
    data = load_images(cfg.dataset, cfg.seed, cfg.max_train)
    x_test_grey, y_test = data["test"]
    x_test = fixed_binarization(x_test_grey, cfg.seed, "test")
    test = evaluate_elbo(model, x_test, "cpu")
    n = min(cfg.iwae_images, len(x_test))
    nll = iwae_nll(model, x_test[:n], cfg.iwae_k, cfg.seed)
    elbo_subset = evaluate_elbo(model, x_test[:n], "cpu")["elbo"]
    baseline = bernoulli_baseline_nll(data["train"][0], x_test)
    results = {"dataset": cfg.dataset, "latent_dim": cfg.latent_dim, "test_elbo": test["elbo"],
               "test_recon": test["recon"], "test_kl": test["kl"], "active_units": test["active_units"],
               "iwae_k": cfg.iwae_k, "iwae_images": n, "test_nll_iwae": nll, "test_elbo_same_images": elbo_subset,
               "baseline_factorised_bernoulli_nll": baseline, "test_images": len(x_test)}
    run.write_json("results.json", results)
    print_metrics(test_elbo=test["elbo"], test_nll_iwae=nll, iwae_k=cfg.iwae_k,
                  active_units=f"{test['active_units']}/{cfg.latent_dim}", baseline_bernoulli_nll=baseline)
    make_plots(run, model, cfg, x_test_grey, x_test, y_test, test)
    write_report(run, cfg, results)
    return results


def make_plots(run: RunDir, model: VAE, cfg: VAEConfig, x_grey, x_bin, y, test: dict) -> None:
    rows = run.metrics()
    plot_curves(rows, "epoch", ["train_elbo", "val_elbo"], run.file("elbo.png"), title="ELBO (nats per image)")
    plot_curves(rows, "epoch", ["val_kl", "active_units"], run.file("kl_active.png"),
                title="KL and active units (validation)")
    pyplot = plt()
    kl = np.array([r["kl_per_dim"] for r in rows])
    fig, ax = pyplot.subplots(figsize=(6, 3.4))
    im = ax.imshow(kl.T, aspect="auto", origin="lower", extent=(0.5, len(rows) + 0.5, -0.5, kl.shape[1] - 0.5))
    ax.set_xlabel("epoch")
    ax.set_ylabel("latent dimension")
    ax.set_title("KL per latent dimension (nats, validation)")
    ax.grid(False)
    fig.colorbar(im, ax=ax)
    save_figure(fig, run.file("kl_per_dim.png"))

    g = torch.Generator().manual_seed(cfg.seed)
    samples = model.decode_probs(torch.randn(64, cfg.latent_dim, generator=g))[:, 0].numpy()
    image_grid(samples, run.file("samples.png"), 8, "samples from p(z) (pixel probabilities)")
    with torch.no_grad():
        mu, _ = model.encoder(torch.from_numpy(x_bin[:16]))
        recon = model.decode_probs(mu)[:, 0].numpy()
    pairs = np.concatenate([x_bin[:16, 0], recon])
    image_grid(pairs, run.file("reconstructions.png"), 16, "test inputs (top) and reconstructions (bottom)")
    strips = np.concatenate([interpolate(model, x_bin[0], x_bin[1], 10, m) for m in ("linear", "slerp")])
    image_grid(strips, run.file("interpolation.png"), 10, "test image 0 -> 1: linear (top), slerp (bottom)")

    with torch.no_grad():
        mus = model.encoder(torch.from_numpy(x_bin))[0].numpy()
    if cfg.latent_dim > 2:  # show the two directions of largest spread
        mus = mus - mus.mean(0)
        mus = mus @ np.linalg.svd(mus, full_matrices=False)[2][:2].T
    fig, ax = pyplot.subplots(figsize=(5.5, 5))
    sc = ax.scatter(mus[:, 0], mus[:, 1], c=y, cmap="tab10", s=4)
    ax.legend(*sc.legend_elements(), fontsize=7, loc="best", title="class")
    ax.set_title("test posterior means" + (" (2 principal directions)" if cfg.latent_dim > 2 else ""))
    save_figure(fig, run.file("latent_scatter.png"))
    if cfg.latent_dim == 2:
        grid = np.linspace(-2.5, 2.5, 15)
        zs = torch.tensor([[a, b] for b in grid[::-1] for a in grid], dtype=torch.float32)
        image_grid(model.decode_probs(zs)[:, 0].numpy(), run.file("manifold.png"), 15, "decoded latent grid")


def write_report(run: RunDir, cfg: VAEConfig, r: dict) -> None:
    manifold = "\n![manifold](manifold.png)\n" if cfg.latent_dim == 2 else ""
    run.write_report(f"""# p08_vae run

Dataset `{cfg.dataset}` (Bernoulli likelihood on stochastically binarised pixels; dynamic binarisation in
training, one fixed binarisation for validation/test), latent dim {cfg.latent_dim}, {cfg.epochs} epochs,
KL warm-up over {cfg.warmup_epochs} epochs to beta={cfg.beta}, free bits {cfg.free_bits}.

| model | test NLL (nats/image, lower is better) |
|---|---|
| VAE, IWAE bound k={r['iwae_k']} ({r['iwae_images']} test images) | {r['test_nll_iwae']:.2f} |
| VAE, -ELBO (same images) | {-r['test_elbo_same_images']:.2f} |
| baseline: independent per-pixel Bernoulli | {r['baseline_factorised_bernoulli_nll']:.2f} |

Test ELBO {r['test_elbo']:.2f} = reconstruction {r['test_recon']:.2f} - KL {r['test_kl']:.2f};
active units {r['active_units']}/{cfg.latent_dim} (Cov_x E_q[z_u] > 0.01).

![elbo](elbo.png) ![kl](kl_active.png) ![kl per dim](kl_per_dim.png)

![samples](samples.png)

![reconstructions](reconstructions.png)

![interpolation](interpolation.png)

![latent](latent_scatter.png)
{manifold}""")
