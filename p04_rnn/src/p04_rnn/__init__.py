"""p04_rnn: Character-level LSTM/GRU language model with an n-gram baseline."""

__version__ = "0.1.0"
