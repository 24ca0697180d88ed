"""p07_autoencoder: Autoencoder anomaly detection by reconstruction error."""

__version__ = "0.1.0"
