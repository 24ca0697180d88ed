"""p08_vae: Variational autoencoder: samples, interpolation, ELBO and IWAE."""

__version__ = "0.1.0"
