"""p04_rnn: a character-level LSTM/GRU/RNN language model with a Kneser-Ney n-gram baseline."""
