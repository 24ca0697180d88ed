"""p01_autodiff: A numpy tensor autodiff engine that trains an MLP; gradients checked."""

__version__ = "0.1.0"
