"""p05_transformer: Small encoder-decoder transformer translator (EN->ES), attention maps."""

__version__ = "0.1.0"
