"""The training loop: negative ELBO (with KL warm-up and free bits), per-epoch validation, checkpoints."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
from dlm_core.device import select_device
from dlm_core.errors import check_finite
from dlm_core.runs import RunDir, print_metrics, progress
from dlm_core.seed import data_rng, seed_everything

from .config import VAEConfig
from .data import binarize, fixed_binarization, load_images
from .model import VAE


def training_loss(recon_ll, kl_dims, beta: float, free_bits: float):
    """Negative (beta-)ELBO averaged over the batch. Free bits: each dim's batch-mean KL counts at least
    `free_bits` nats, so the optimiser gains nothing by pushing a dimension all the way to the prior."""
    kl = kl_dims.mean(0)
    if free_bits > 0:
        kl = torch.clamp(kl, min=free_bits)
    return -recon_ll.mean() + beta * kl.sum()


@torch.no_grad()
def evaluate_elbo(model: VAE, x: np.ndarray, device, batch_size: int = 500) -> dict:
    """ELBO (beta = 1), its two terms, KL per dim and active units (Burda et al.: Cov_x(E_q[z_u]) > 0.01)."""
    model.eval()
    recon, kl_dims, mus = [], [], []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[i:i + batch_size]).to(device)
        r, k, mu = model.elbo_terms(xb)
        recon.append(r.cpu())
        kl_dims.append(k.cpu())
        mus.append(mu.cpu())
    model.train()
    recon, kl_dims, mus = torch.cat(recon), torch.cat(kl_dims), torch.cat(mus)
    activity = mus.var(0)
    return {"elbo": float((recon - kl_dims.sum(1)).mean()), "recon": float(recon.mean()),
            "kl": float(kl_dims.sum(1).mean()), "kl_per_dim": kl_dims.mean(0).tolist(),
            "active_units": int((activity > 0.01).sum()), "activity": activity.tolist()}


def train(cfg: VAEConfig, run_dir=None, resume: bool = False) -> RunDir:
    seed_everything(cfg.seed)
    device = select_device(cfg.device)
    data = load_images(cfg.dataset, cfg.seed, cfg.max_train)
    x_train = data["train"][0]
    x_val = fixed_binarization(data["val"][0], cfg.seed, "val")

    run = RunDir.at(run_dir, cfg) if run_dir is not None else RunDir.create("p08_vae", cfg)
    ckpt = Checkpointer(run.checkpoint_dir)
    model = VAE(cfg.latent_dim, cfg.channels, cfg.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start, best = 1, -float("inf")
    if resume and (state := resume_training(ckpt, model, opt, run)) is not None:
        start, best = state["epoch"] + 1, state["best_val_elbo"]

    step = (start - 1) * -(-len(x_train) // cfg.batch_size)
    for epoch in range(start, cfg.epochs + 1):
        t0 = time.perf_counter()
        beta = cfg.beta_at(epoch)
        rng = data_rng(cfg.seed, epoch)
        order = rng.permutation(len(x_train))
        xb_all = binarize(x_train, rng)  # a fresh binarisation every epoch (dynamic binarisation)
        bar = progress(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch}")
        total, seen = 0.0, 0
        for i in bar:
            xb = torch.from_numpy(xb_all[order[i:i + cfg.batch_size]]).to(device)
            recon, kl_dims, _ = model.elbo_terms(xb)
            loss = training_loss(recon, kl_dims, beta, cfg.free_bits)
            step += 1
            check_finite(loss.item(), step, cfg.lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float((recon - kl_dims.sum(1)).sum().detach())
            seen += len(xb)
            bar.set_postfix(elbo=f"{total / seen:.1f}")
        val = evaluate_elbo(model, x_val, device)
        row = {"epoch": epoch, "train_elbo": total / seen, "val_elbo": val["elbo"], "val_recon": val["recon"],
               "val_kl": val["kl"], "beta": beta, "active_units": val["active_units"],
               "kl_per_dim": val["kl_per_dim"], "seconds": time.perf_counter() - t0}
        run.log(**row)
        print_metrics(epoch=epoch, elbo=val["elbo"], recon=val["recon"], kl=val["kl"], beta=beta,
                      active_units=f"{val['active_units']}/{cfg.latent_dim}")
        is_best = val["elbo"] > best
        best = max(best, val["elbo"])
        ckpt.save(epoch, {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                          "best_val_elbo": best, "config": dataclasses.asdict(cfg)}, is_best=is_best)
    return run
