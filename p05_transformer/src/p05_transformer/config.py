"""Every knob of the translator, with defaults that train in ~43 CPU-minutes (one core, 1 torch thread)."""

from __future__ import annotations

import dataclasses

from dlm_core.config import check

PROJECT = "p05_transformer"


@dataclasses.dataclass
class TransformerConfig:
    # data
    dataset: str = dataclasses.field(default="bible-en-es", metadata={"help": "parallel corpus (EN->ES)"})
    max_words: int = dataclasses.field(default=20, metadata={"help": "keep pairs whose English has <= this many words"})
    train_limit: int = dataclasses.field(default=0, metadata={"help": "use only the first N training pairs (0 = all)"})
    extra_train_words: int = dataclasses.field(default=30, metadata={
        "help": "also train on the longer verses, up to this many English words (0 = off; val/test keep max_words)"})
    vocab_size: int = dataclasses.field(default=4000, metadata={"help": "joint EN+ES BPE vocabulary"})
    max_len: int = dataclasses.field(default=64, metadata={"help": "max subword tokens per side (longer: dropped "
                                                                     "from training, refused at translation)"})
    # model
    d_model: int = 128
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    # training
    epochs: int = dataclasses.field(default=22, metadata={"help": "passes over the training pairs (22: what fits "
                                                                  "45 CPU-minutes on one core here)"})
    batch_size: int = dataclasses.field(default=64, metadata={"help": "sentence pairs per step"})
    lr: float = dataclasses.field(default=1.5e-3, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = 0.01
    warmup_steps: int = dataclasses.field(default=300, metadata={"help": "linear warmup, then cosine decay to 0"})
    label_smoothing: float = 0.1
    clip_norm: float = dataclasses.field(default=1.0, metadata={"help": "gradient clipping (global L2 norm)"})
    average_last: int = dataclasses.field(default=3, metadata={
        "help": "the final model is the mean of the last K epochs' weights (at most the epochs run; 3: chosen on "
                "validation; 1 = off: the epoch with the best val BLEU)"})
    # The budget is epochs: a result must not depend on the machine's load. The wall-clock cap is a safety net
    # only, off by default; a run that hits it is reported as incomplete (results.json, report), not a result.
    max_minutes: float = dataclasses.field(default=0.0, metadata={"help": "safety net: stop after the epoch that "
                                                                          "passes this wall-clock time and mark the "
                                                                          "run incomplete (default 0 = off)"})
    # evaluation / decoding
    val_sentences: int = dataclasses.field(default=200, metadata={"help": "val pairs decoded for val_bleu each epoch"})
    test_sentences: int = dataclasses.field(default=0, metadata={"help": "test pairs scored at the end (0 = all)"})
    beam: int = dataclasses.field(default=4, metadata={"help": "beam size for the final test score (1 = greedy)"})
    length_alpha: float = dataclasses.field(default=1.5, metadata={"help": "beam length normalisation exponent "
                                                                        "(1.5: chosen on validation)"})
    no_repeat_ngram: int = dataclasses.field(default=4, metadata={"help": "beam search never repeats a subword "
                                                                          "n-gram of this size (0 = off; 4: chosen "
                                                                          "on validation)"})
    attention_samples: int = dataclasses.field(default=3, metadata={"help": "test sentences drawn as attention maps"})
    export: bool = dataclasses.field(default=True, metadata={"help": "export the ONNX bundle after training"})
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check(self.dataset == "bible-en-es", f"--dataset {self.dataset!r}: only bible-en-es is available")
        check(1 <= self.max_words <= 200, "--max-words must be in 1..200")
        check(self.train_limit >= 0, "--train-limit must be >= 0")
        check(self.extra_train_words == 0 or self.extra_train_words > self.max_words,
              "--extra-train-words must be 0 (off) or larger than --max-words")
        check(self.vocab_size >= 100, "--vocab-size must be >= 100")
        check(self.max_len >= 8, "--max-len must be >= 8")
        check(self.d_model % self.heads == 0, f"--d-model {self.d_model} must be divisible by --heads {self.heads}")
        check(min(self.enc_layers, self.dec_layers, self.d_ff, self.heads) >= 1, "layers, heads and d_ff must be >= 1")
        check(0 <= self.dropout < 1, "--dropout must be in [0, 1)")
        check(self.epochs >= 1 and self.batch_size >= 1, "--epochs and --batch-size must be >= 1")
        check(self.lr > 0, "--lr must be > 0")
        check(0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)")
        check(self.clip_norm > 0, "--clip-norm must be > 0")
        check(self.average_last >= 1, "--average-last must be >= 1 (1 = off)")
        check(self.beam >= 1, "--beam must be >= 1")
        check(self.no_repeat_ngram >= 0, "--no-repeat-ngram must be >= 0 (0 = off)")
        check(self.attention_samples >= 1, "--attention-samples must be >= 1")
        check(self.val_sentences >= 1, "--val-sentences must be >= 1")


PRESETS = {
    "default": TransformerConfig(),
    # the demo: the default model on the short verses only, for 4 epochs (~3 min on one core): formulaic verses
    # come out right, the rest is rough
    "quick": TransformerConfig(extra_train_words=0, epochs=4, warmup_steps=150, val_sentences=50, test_sentences=200,
                               beam=2, average_last=1),
}
