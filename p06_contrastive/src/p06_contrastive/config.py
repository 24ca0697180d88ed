"""Every knob of training, indexing and evaluation in one dataclass; defaults fit a shared 2-core CPU."""

from __future__ import annotations

import dataclasses

from dlm_core.config import check


def _f(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class Config:
    # data
    split_seed: int = _f(0, "seed of the source-package split of debian-packages (keep fixed across runs)")
    max_corpus: int = _f(0, "use a random subset of this many documents, drawn with --split-seed "
                            "(0 = the full corpus; tests)")
    max_train_pairs: int = _f(0, "cap on training (synopsis, description) pairs per epoch (0 = all)")
    # tokenizer
    vocab_size: int = _f(48000, "BPE vocabulary trained on the training split (large: rare names stay whole)")
    max_query_len: int = _f(24, "tokens kept of a query (synopsis)")
    max_doc_len: int = _f(192, "tokens kept of a document (long description)")
    # encoder
    dim: int = _f(768, "embedding and model width")
    layers: int = _f(0, "transformer blocks (0 = a bag of token embeddings with learned token and position weights)")
    heads: int = _f(4, "attention heads")
    ff_mult: int = _f(2, "feed-forward width = ff_mult * dim")
    dropout: float = _f(0.2, "dropout in the encoder (a bag of embeddings: on the pooled vector)")
    pool: str = _f("weighted", "mean | weighted (a learned per-token weight, softmax over the text's tokens)")
    asymmetric: bool = _f(True, "bag encoder: separate learned token weights for queries and for documents "
                                "(one shared embedding table)")
    lexical_dim: int = _f(0, "bag encoder: append a lexical channel, the learned-weight bag of fixed random "
                             "token codes of this size (0 = none)")
    # InfoNCE
    temperature: float = _f(0.05, "initial softmax temperature")
    learn_temperature: bool = _f(True, "learn the temperature (as log 1/T, clamped to T >= 0.01)")
    symmetric: bool = _f(False, "add the document->query InfoNCE term (off: query->document only, the "
                                "direction search uses; chosen on val)")
    hard_negatives: int = _f(15, "BM25-mined hard negative documents per query (0 = in-batch negatives only)")
    hard_pool: int = _f(20, "each hard negative is drawn afresh, per step, from the query's top-N BM25 documents "
                             "(and the encoder's own top-N, with --dense-negatives)")
    dense_negatives: bool = _f(True, "after each epoch, add the encoder's own top-N training documents per query "
                                     "to the hard-negative pool (ANCE-style re-mining)")
    dropout_positives: bool = _f(False, "add a SimCSE term: a document vs itself under another dropout mask")
    ict: float = _f(1.0, "inverse-cloze pseudo-pairs (a span of a training document vs the rest of it) per "
                         "training pair and epoch, in their own batches")
    token_dropout: float = _f(0.2, "drop each document token with this probability in training (augmentation)")
    # optimisation
    epochs: int = _f(4, "passes over the training pairs; the best epoch on validation is kept")
    batch_size: int = _f(256, "pairs per step: each query sees batch_size-1 in-batch negatives (+ hard ones)")
    lr: float = _f(2e-3, "AdamW peak learning rate (linear warmup, cosine decay)")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    warmup_steps: int = _f(50, "linear warmup steps")
    val_distractors: int = _f(8000, "non-test documents added to the validation queries' documents per epoch")
    eval_batch_size: int = _f(512, "batch size when encoding")
    seed: int = _f(0, "seed of init, data order and dropout")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N | mps")
    threads: int = _f(1, "CPU threads for torch and FAISS (1 is fastest on a shared machine; 0 = all cores)")

    def __post_init__(self):
        check(self.max_corpus == 0 or self.max_corpus >= 200, "--max-corpus must be 0 (all) or >= 200")
        check(0 <= self.hard_negatives <= 16, "--hard-negatives must be in [0, 16]")
        check(self.hard_pool >= 1, "--hard-pool must be >= 1")
        check(self.max_train_pairs >= 0, "--max-train-pairs must be >= 0")
        check(self.vocab_size >= 200, "--vocab-size must be >= 200")
        check(self.max_query_len >= 4 and self.max_doc_len >= 8, "--max-query-len >= 4 and --max-doc-len >= 8")
        check(self.dim >= 8 and self.heads >= 1 and self.dim % self.heads == 0,
              f"--dim {self.dim} must be >= 8 and divisible by --heads {self.heads}")
        check(self.layers >= 0, "--layers must be >= 0 (0 = a bag of token embeddings)")
        check(self.lexical_dim >= 0 and (self.lexical_dim == 0 or self.layers == 0),
              "--lexical-dim must be >= 0, and is for the bag encoder (--layers 0) only")
        check(self.ff_mult >= 1, "--ff-mult must be >= 1")
        check(0 <= self.dropout < 1, "--dropout must be in [0, 1)")
        check(self.pool in ("mean", "weighted"), f"--pool {self.pool!r}: use mean or weighted")
        check(0 <= self.ict <= 10, "--ict must be in [0, 10]")
        check(0 <= self.token_dropout < 1, "--token-dropout must be in [0, 1)")
        check(0.005 <= self.temperature <= 1, "--temperature must be in [0.005, 1]")
        check(self.epochs >= 1, "--epochs must be >= 1")
        check(self.batch_size >= 2, "--batch-size must be >= 2 (in-batch negatives need a batch)")
        check(self.lr > 0, "--lr must be > 0")
        check(self.weight_decay >= 0, "--weight-decay must be >= 0")
        check(self.warmup_steps >= 0, "--warmup-steps must be >= 0")
        check(self.val_distractors >= 0, "--val-distractors must be >= 0")
        check(self.threads >= 0, "--threads must be >= 0 (0 = all cores)")
        check(self.eval_batch_size >= 1, "--eval-batch-size must be >= 1")


PRESETS = {
    "default": Config(),
    # make demo: the default recipe (a bag of embeddings) on a few thousand real pairs; seconds of training
    "quick": Config(max_corpus=4000, vocab_size=8000, dim=128, epochs=3, batch_size=128, val_distractors=800,
                    max_doc_len=96, hard_negatives=7, hard_pool=5),
    # tests: tiny everything, every path of the default (bag, weighted pooling, hard negatives, inverse
    # cloze, token dropout); the transformer path has its own small test run
    "tiny": Config(max_corpus=1200, vocab_size=600, dim=32, epochs=2, batch_size=32, max_doc_len=32,
                   max_query_len=12, val_distractors=200, warmup_steps=5, lr=3e-3, hard_negatives=2,
                   hard_pool=3, ict=0.5),
}


@dataclasses.dataclass
class SectionConfig:
    """The section classifier (section.py): TF-IDF n-grams -> embedding bag -> MLP."""

    word_features: int = _f(100_000, "most frequent word 1-2-grams kept (min_df 2)")
    char_features: int = _f(100_000, "most frequent character 3-5-grams kept (inside word boundaries)")
    position_features: int = _f(50_000, "most frequent word 1-2-grams of the first and of the last paragraph, a block "
                                "each (0 = no such blocks)")
    dim: int = _f(96, "size of the n-gram vectors summed by the embedding bag")
    hidden: int = _f(256, "hidden layer of the MLP (the bundle's embedding output)")
    dropout: float = _f(0.5, "dropout on the bag and the hidden layer")
    label_smoothing: float = _f(0.1, "label smoothing of the cross-entropy")
    lr: float = _f(2e-3, "Adam learning rate (SparseAdam for the bag)")
    epochs: int = _f(5, "epochs at most; the epoch best on val accuracy is kept")
    batch_size: int = _f(64, "texts per step")
    seed: int = _f(0, "seed of the initialisation and the batch order")
    max_train: int = _f(0, "a seeded subset of this many training packages (0 = all 48,346)")
    tfidf_cs: tuple[float, ...] = _f((30.0, 100.0), "the baseline's C grid (chosen on val)")
    linear_c: float = _f(30.0, "C of the model's linear part, a one-vs-rest LR over all its columns")

    def __post_init__(self):
        check(min(self.word_features, self.char_features, self.dim, self.hidden, self.epochs, self.batch_size) > 0,
              "--word-features, --char-features, --dim, --hidden, --epochs and --batch-size must be positive")
        check(0 <= self.dropout < 1 and 0 <= self.label_smoothing < 1, "--dropout and --label-smoothing in [0, 1)")
        check(self.position_features >= 0, "--position-features must be >= 0 (0 = none)")
        check(self.lr > 0 and self.max_train >= 0 and self.linear_c > 0 and all(c > 0 for c in self.tfidf_cs),
              "--lr, --linear-c and every --tfidf-cs must be positive, --max-train >= 0")


BASELINE_FEATURES = ("word", "word+char")  # the baseline grid's two feature sets (section.tfidf_logreg)

SECTION_PRESETS = {
    "default": SectionConfig(),
    # make demo and the full stack's text task: a quarter of the packages, smaller tables; ~1 min of CPU
    "quick": SectionConfig(word_features=30_000, char_features=30_000, position_features=0, dim=64, hidden=128,
                           epochs=4, max_train=12_000, tfidf_cs=(10.0,)),
}
