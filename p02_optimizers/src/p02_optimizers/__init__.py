"""p02_optimizers: SGD/momentum/Adam... paths on 2D loss surfaces, plotted; a real network's loss landscape."""

__version__ = "0.1.0"
