"""p08_vae: the ELBO pieces by hand, the IWAE bound, learning on real data, the CLIs' behaviour."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from p08_vae.config import VAEConfig
from p08_vae.evaluate import bernoulli_baseline_nll, slerp
from p08_vae.model import VAE, bernoulli_log_likelihood, gaussian_log_density, kl_per_dim, reparameterize
from p08_vae.train import evaluate_elbo, training_loss


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4) * 0.5
    z = reparameterize(mu.expand(200_000, 3, 4), logvar.expand(200_000, 3, 4))
    log_q = gaussian_log_density(z, mu, logvar)
    log_p = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
    mc = (log_q - log_p).mean(0)
    closed = kl_per_dim(mu, logvar).sum(1)
    assert torch.allclose(mc, closed, atol=0.03, rtol=0.01), (mc, closed)


def test_reparameterised_sample_has_the_right_moments_and_gradients():
    torch.manual_seed(1)
    mu = torch.tensor([1.5, -2.0], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(0.25)], requires_grad=True)
    z = reparameterize(mu.expand(100_000, 2), logvar.expand(100_000, 2))
    assert torch.allclose(z.mean(0), mu.detach(), atol=0.02)
    assert torch.allclose(z.var(0), torch.tensor([1.0, 0.25]), atol=0.02)
    # E[z^2] = mu^2 + exp(logvar); the mean over 2 dims halves it: d/dmu = mu, d/dlogvar = sigma^2 / 2
    (z ** 2).mean().backward()
    assert torch.allclose(mu.grad, mu.detach(), atol=0.03)
    assert torch.allclose(logvar.grad, torch.tensor([0.5, 0.125]), atol=0.01)


def test_bernoulli_log_likelihood_by_hand():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    x = torch.tensor([[1.0, 0.0, 0.0]])
    p = torch.sigmoid(logits)
    hand = torch.log(p[0, 0]) + torch.log(1 - p[0, 1]) + torch.log(1 - p[0, 2])
    assert torch.allclose(bernoulli_log_likelihood(logits, x), hand.unsqueeze(0))


def test_free_bits_and_beta_in_the_loss():
    recon = torch.tensor([-10.0, -12.0])
    kl = torch.tensor([[0.1, 2.0], [0.3, 1.0]])  # batch-mean per dim: 0.2, 1.5
    assert torch.isclose(training_loss(recon, kl, 1.0, 0.0), torch.tensor(11.0 + 1.7))
    assert torch.isclose(training_loss(recon, kl, 0.5, 0.0), torch.tensor(11.0 + 0.85))
    assert torch.isclose(training_loss(recon, kl, 1.0, 0.5), torch.tensor(11.0 + 0.5 + 1.5))
    cfg = VAEConfig(beta=1.0, warmup_epochs=4)
    assert [cfg.beta_at(e) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]


def _binary_batch(n=16):
    g = torch.Generator().manual_seed(3)
    return (torch.rand(n, 1, 28, 28, generator=g) < 0.2).float()


def test_elbo_below_iwae_below_zero_and_iwae_grows_with_k():
    torch.manual_seed(0)
    model = VAE(latent_dim=4, channels=8, hidden=32).eval()
    x = _binary_batch()
    elbo = evaluate_elbo(model, x.numpy(), "cpu")["elbo"]
    bounds = {}
    for k in (1, 10, 100):
        torch.manual_seed(5)
        bounds[k] = float(torch.stack([model.iwae_bound(x, k) for _ in range(3)]).mean())
    assert elbo <= bounds[100] + 1e-3 and bounds[100] < 0
    assert bounds[1] < bounds[10] < bounds[100]
    assert abs(bounds[1] - elbo) < 0.02 * abs(elbo)  # k=1 is the ELBO in expectation


def test_slerp_endpoints_and_norm():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    assert torch.isclose(slerp(a, b, 0.5).norm(), torch.tensor(3.0))


def test_baseline_nll_by_hand():
    train = np.array([[[0.5, 1.0]], [[0.5, 0.0]]], dtype=np.float32)  # pixel means 0.5, 0.5
    test = np.array([[[1.0, 0.0]]], dtype=np.float32)
    assert bernoulli_baseline_nll(train, test) == pytest.approx(2 * math.log(2), rel=1e-6)


def cli(*args):
    return subprocess.run([sys.executable, "-c", "import sys; from p08_vae.cli import *; "
                           f"sys.exit({args[0]}(sys.argv[1:]))", *args[1:]], capture_output=True, text=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short seeded run on real MNIST (2,000 images, 3 epochs), shared by the tests below."""
    runs = tmp_path_factory.mktemp("runs")
    from p08_vae.evaluate import final_evaluation, load_run
    from p08_vae.train import train

    cfg = VAEConfig(epochs=3, batch_size=64, warmup_epochs=1, max_train=2000, channels=16, hidden=128,
                    latent_dim=8, iwae_k=16, iwae_images=50, device="cpu")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLM_RUNS", str(runs))
        run = train(cfg)
        model, cfg = load_run(run.path)
        results = final_evaluation(run, model, cfg)
    return run, results


def test_short_run_learns(trained):
    run, results = trained
    rows = run.metrics()
    assert rows[-1]["val_elbo"] > rows[0]["val_elbo"] + 15  # nats per image
    assert -results["test_elbo"] < results["baseline_factorised_bernoulli_nll"]
    assert results["test_nll_iwae"] <= -results["test_elbo_same_images"] + 1e-3
    for f in ("report.md", "samples.png", "interpolation.png", "kl_per_dim.png", "latent_scatter.png"):
        assert (run.path / f).exists(), f


def test_resume_continues_from_the_checkpoint(trained, tmp_path):
    import shutil

    from p08_vae.train import train

    run, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    for p in (copy / "checkpoints").glob("epoch-3.pt"):
        p.unlink()  # as if killed during epoch 3
    saved = VAEConfig(**__import__("json").loads((copy / "config.json").read_text()))
    resumed = train(saved, run_dir=copy, resume=True)
    rows = resumed.metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["val_elbo"] == pytest.approx(run.metrics()[-1]["val_elbo"], abs=1e-4)


def test_sampling_is_seeded_and_writes_where_it_says(trained, tmp_path):
    run, _ = trained
    outs = []
    for name in ("a", "b"):
        proc = cli("sample_main", str(run.path), "--n", "3", "--seed", "7", "--out", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.strip().splitlines()
        assert lines[0] == f"sample_id: 0 output_saved: {tmp_path / name / 'sample_0.png'}"
        outs.append([(tmp_path / name / f"sample_{i}.png").read_bytes() for i in range(3)])
    assert outs[0] == outs[1]
    proc = cli("sample_main", str(run.path), "--n", "3", "--seed", "8", "--out", str(tmp_path / "c"))
    assert (tmp_path / "c" / "sample_0.png").read_bytes() != outs[0][0]


def test_interpolate_and_clear_errors(trained, tmp_path):
    run, _ = trained
    ok = cli("interpolate_main", str(run.path), "--from", "3", "--to", "8", "--steps", "5",
             "--out", str(tmp_path / "i.png"))
    assert ok.returncode == 0, ok.stderr and (tmp_path / "i.png").exists()
    bad_id = cli("interpolate_main", str(run.path), "--from", "3", "--to", "100000")
    assert bad_id.returncode == 2 and bad_id.stderr.strip().splitlines() == [
        "error: test image index 100000 is out of range; use 0..999"]
    bad_dir = cli("sample_main", str(tmp_path / "nope"))
    assert bad_dir.returncode == 2 and len(bad_dir.stderr.strip().splitlines()) == 1
    assert "not a run directory" in bad_dir.stderr
    bad_cfg = cli("train_main", "--latent-dim", "0")
    assert bad_cfg.returncode == 2 and bad_cfg.stderr.strip() == "error: --latent-dim must be >= 1"
    assert Path(run.path / "config.json").exists()
