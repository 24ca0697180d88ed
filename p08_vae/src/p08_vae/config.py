"""Every knob of the VAE, with defaults that train in a few minutes on 2 CPU cores."""

from __future__ import annotations

import dataclasses

from dlm_core.config import check

DATASETS = ("mnist10k", "fashion-mnist")


@dataclasses.dataclass
class VAEConfig:
    dataset: str = dataclasses.field(default="mnist10k", metadata={"help": "mnist10k | fashion-mnist"})
    latent_dim: int = dataclasses.field(default=16, metadata={"help": "2 for the latent map, 16-32 for quality"})
    channels: int = dataclasses.field(default=32, metadata={"help": "width of the first conv layer"})
    hidden: int = 256
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = dataclasses.field(default=1.0, metadata={"help": "final KL weight (1 = the true ELBO)"})
    warmup_epochs: int = dataclasses.field(default=10, metadata={"help": "KL annealing: beta rises linearly "
                                                                          "from 0 over these epochs (0 = off)"})
    free_bits: float = dataclasses.field(default=0.0, metadata={"help": "min KL (nats) per latent dim in the "
                                                                         "training loss (0 = off)"})
    max_train: int = dataclasses.field(default=0, metadata={"help": "use only the first N training images (0 = all)"})
    iwae_k: int = dataclasses.field(default=256, metadata={"help": "importance samples for the test NLL"})
    iwae_images: int = dataclasses.field(default=1000, metadata={"help": "test images in the IWAE estimate"})
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        check(self.dataset in DATASETS, f"--dataset {self.dataset!r}: use one of {', '.join(DATASETS)}")
        check(self.latent_dim >= 1, "--latent-dim must be >= 1")
        check(self.epochs >= 1, "--epochs must be >= 1")
        check(self.batch_size >= 1, "--batch-size must be >= 1")
        check(self.lr > 0, "--lr must be > 0")
        check(self.beta >= 0, "--beta must be >= 0")
        check(self.warmup_epochs >= 0, "--warmup-epochs must be >= 0")
        check(self.free_bits >= 0, "--free-bits must be >= 0")
        check(self.iwae_k >= 1, "--iwae-k must be >= 1")

    def beta_at(self, epoch: int) -> float:
        """KL weight for a 1-based epoch: linear warm-up from beta/warmup to beta."""
        if self.warmup_epochs == 0:
            return self.beta
        return self.beta * min(1.0, epoch / self.warmup_epochs)


PRESETS = {
    "default": VAEConfig(),
    "quick": VAEConfig(epochs=5, batch_size=64, warmup_epochs=2, iwae_k=64, iwae_images=200),
    "latent2": VAEConfig(latent_dim=2, epochs=20, warmup_epochs=5),
}
