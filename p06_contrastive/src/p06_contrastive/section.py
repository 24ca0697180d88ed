"""The Debian section classifier served behind `/predict`: a package description -> its section (58 classes).

Model: wide and deep (Cheng et al., 2016) over the text's TF-IDF row: word 1-2-grams and character 3-5-grams
(inside word boundaries) of the whole text, and word 1-2-grams of its first and of its last paragraph as blocks
of their own (where a phrase stands says something: "development files" closes a -dev package's description).
A linear layer on the row (the wide part: logistic regression's form) plus an embedding bag (the row's weighted
sum of one learned vector per n-gram, fastText's idea) into a small MLP (the deep part), their logits added and
trained together with Adam (sparse updates for the two bags), label smoothing and dropout; the epoch is chosen
on the validation packages. Its probabilities are averaged with a one-vs-rest LR over the same row (share on
val), then shifted by tau * log train prior (tau on val; choose_prior_shift).
Beside it, the baseline it must beat: TF-IDF + logistic regression, its features (word, or word + char n-grams)
and C chosen on the same validation packages, and its own prior shift. Test accuracy and macro-F1 of both, with
a paired bootstrap interval of the difference. Exported as a torch-free `dlm-bundle/1` (preprocess `ngrams`: the
vocabulary and idf in `ngrams.json`; one graph, (feature_ids, feature_weights) -> (logits, embedding)).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from dlm_core.bundle import provenance
from dlm_core.bundle_write import save_bundle
from dlm_core.export import onnx_export, torch_reference
from dlm_core.io import write_json
from dlm_core.predictors.ngrams import NgramFeaturizer, field_lower

from .config import BASELINE_FEATURES, SectionConfig

BUNDLE_NAME = "package-section"


def say(*args) -> None:
    print(*args, flush=True)


# --- features ---------------------------------------------------------------------------------------------
def fit_vectorizers(texts: list[str], cfg: SectionConfig) -> list[TfidfVectorizer]:
    """Word 1-2-grams and char 3-5-grams of the whole text, then (cfg.position_features > 0) word 1-2-grams of its
    first and of its last paragraph as blocks of their own: "development files" in the last paragraph says more
    about a package's section than the same words anywhere in it."""
    word = dict(sublinear_tf=True, min_df=2, ngram_range=(1, 2), dtype=np.float32)
    vecs = [TfidfVectorizer(max_features=cfg.word_features, **word),
            TfidfVectorizer(sublinear_tf=True, min_df=2, analyzer="char_wb", ngram_range=(3, 5),
                            max_features=cfg.char_features, dtype=np.float32)]
    if cfg.position_features:
        vecs += [TfidfVectorizer(preprocessor=functools.partial(field_lower, field=f),
                                 max_features=cfg.position_features, **word) for f in ("first", "last")]
    for v in vecs:
        v.fit(texts)
    return vecs


def transform(vecs: list[TfidfVectorizer], texts: list[str]) -> sp.csr_matrix:
    return sp.hstack([v.transform(texts) for v in vecs]).tocsr().astype(np.float32)


def ngram_spec(vecs: list[TfidfVectorizer]) -> dict:
    """What predictors/ngrams.py needs to rebuild `transform` without scikit-learn."""
    blocks, offset = [], 0
    for v in vecs:
        field = v.preprocessor.keywords["field"] if v.preprocessor else "all"
        blocks.append({"analyzer": v.analyzer, "field": field, "ngram_range": list(v.ngram_range),
                       "token_pattern": v.token_pattern,
                       "sublinear_tf": bool(v.sublinear_tf), "offset": offset,
                       "vocab": {t: int(i) for t, i in v.vocabulary_.items()}, "idf": v.idf_.tolist()})
        offset += len(v.vocabulary_)
    return {"blocks": blocks, "n_features": offset}


def bags(x: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A CSR batch as EmbeddingBag's (flat ids, offsets, per-sample weights)."""
    return (torch.from_numpy(x.indices.astype(np.int64)), torch.from_numpy(x.indptr[:-1].astype(np.int64)),
            torch.from_numpy(x.data.astype(np.float32)))


def padded(x: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """A CSR batch as the graph's [B, L] (ids, weights), padded with column 0 at weight 0."""
    return NgramFeaturizer.pad([(x.indices[a:b].astype(np.int64), x.data[a:b]) for a, b in
                                zip(x.indptr[:-1], x.indptr[1:])])


# --- the model --------------------------------------------------------------------------------------------
class NgramMLP(nn.Module):
    """Wide and deep over one TF-IDF row x: logits = wide(x) + deep(x).
    wide: a linear layer on x (logistic regression's form, its weights one bag row per n-gram);
    deep: the weighted bag of n-gram vectors -> ReLU -> Linear -> ReLU (the embedding) -> Linear."""

    def __init__(self, n_features: int, classes: int, cfg: SectionConfig):
        super().__init__()
        self.bag = nn.EmbeddingBag(n_features, cfg.dim, mode="sum", sparse=True)
        self.wide = nn.EmbeddingBag(n_features, classes, mode="sum", sparse=True)
        nn.init.normal_(self.bag.weight, 0.0, 0.05)
        nn.init.zeros_(self.wide.weight)
        self.hidden = nn.Linear(cfg.dim, cfg.hidden)
        self.out = nn.Linear(cfg.hidden, classes)
        self.drop = nn.Dropout(cfg.dropout)

    def head(self, bagged: torch.Tensor, wide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = torch.relu(self.hidden(self.drop(torch.relu(bagged))))
        return self.out(self.drop(emb)) + wide, emb

    def forward(self, ids, offsets, weights):
        return self.head(self.bag(ids, offsets, per_sample_weights=weights),
                         self.wide(ids, offsets, per_sample_weights=weights))[0]


@dataclasses.dataclass
class LinearPart:
    """One-vs-rest logistic regressions on the first `n_features` columns of the row: per-section sigmoids
    normalised to sum to 1 (what scikit-learn's OneVsRestClassifier answers), averaged with the network's
    probabilities at `share` (chosen on val)."""

    coef: np.ndarray  # (classes, n_features)
    intercept: np.ndarray  # (classes,)
    share: float

    @property
    def n_features(self) -> int:
        return self.coef.shape[1]

    def proba(self, x: sp.csr_matrix) -> np.ndarray:
        z = np.asarray(x[:, :self.n_features] @ self.coef.T, np.float64) + self.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        return p / np.maximum(p.sum(1, keepdims=True), 1e-300)


def fit_one_vs_rest(x: sp.csr_matrix, y: np.ndarray, c: float, classes: int, jobs: int = 1) -> LinearPart:
    """One binary logistic regression per section (liblinear), over every column of x: on 200k+ TF-IDF columns
    this finishes in minutes where a multinomial lbfgs fit did not in 30 CPU-minutes. A section absent from y
    gets a bias that keeps it at ~0."""
    from sklearn.multiclass import OneVsRestClassifier

    clf = OneVsRestClassifier(LogisticRegression(C=c, solver="liblinear"), n_jobs=jobs).fit(x, y)
    coef = np.zeros((classes, x.shape[1]), np.float32)
    intercept = np.full(classes, -30.0)
    for k, est in zip(clf.classes_, clf.estimators_, strict=True):  # (two classes would share one estimator)
        coef[k], intercept[k] = est.coef_[0], est.intercept_[0]
    return LinearPart(coef, intercept, 0.0)


def mix(p_net: np.ndarray, p_linear: np.ndarray | None, share: float) -> np.ndarray:
    return p_net if p_linear is None else (1 - share) * p_net + share * p_linear


class PaddedNgramMLP(nn.Module):
    """The exported form: [B, L] ids and weights; each bag as gather * weight, summed (no EmbeddingBag op).
    With a linear part, `logits` are the log of the averaged probabilities (softmax gives them back); with a
    prior shift, `shift` (tau * log train prior) is subtracted from them."""

    def __init__(self, model: NgramMLP, linear: LinearPart | None = None, shift: np.ndarray | None = None):
        super().__init__()
        self.model = model.eval()
        if linear is not None and linear.share <= 0:
            linear = None  # share 0: the network alone
        self.linear = linear
        if linear is not None:
            self.register_buffer("lin_w", torch.from_numpy(np.ascontiguousarray(linear.coef.T, np.float32)))
            self.register_buffer("lin_b", torch.from_numpy(linear.intercept.astype(np.float32)))
        self.register_buffer("shift", torch.from_numpy(np.zeros(model.out.out_features) if shift is None else shift)
                             .float())

    def forward(self, feature_ids, feature_weights):
        w = feature_weights.unsqueeze(-1)
        logits, emb = self.model.head((self.model.bag.weight[feature_ids] * w).sum(1),
                                      (self.model.wide.weight[feature_ids] * w).sum(1))
        if self.linear is not None:
            inside = feature_ids < self.linear.n_features
            ids = torch.where(inside, feature_ids, torch.zeros_like(feature_ids))
            lin = (self.lin_w[ids] * torch.where(inside, feature_weights, torch.zeros_like(feature_weights))
                   .unsqueeze(-1)).sum(1) + self.lin_b
            # in log space (a sum of sigmoids of ~1e-40 loses its digits in float32)
            log_lin = -nn.functional.softplus(-lin)  # log sigmoid
            log_lin = log_lin - torch.logsumexp(log_lin, 1, keepdim=True)
            a = math.log(1 - self.linear.share) + torch.log_softmax(logits, 1)
            b = math.log(self.linear.share) + log_lin
            top = torch.maximum(a, b)
            logits = top + torch.log(torch.exp(a - top) + torch.exp(b - top))
        return logits - self.shift, emb


@torch.no_grad()
def predict_proba(model: NgramMLP, x: sp.csr_matrix, batch_size: int = 1024) -> np.ndarray:
    model.eval()
    out = [torch.softmax(model(*bags(x[s:s + batch_size])), 1).numpy() for s in range(0, x.shape[0], batch_size)]
    return np.concatenate(out)


def train_mlp(x: sp.csr_matrix, y: np.ndarray, xv: sp.csr_matrix, yv: np.ndarray, classes: int,
              cfg: SectionConfig, log=None) -> tuple[NgramMLP, dict]:
    """Adam (SparseAdam for the two bags) for cfg.epochs; the weights of the epoch best on val accuracy."""
    log = log or say
    torch.manual_seed(cfg.seed)
    model = NgramMLP(x.shape[1], classes, cfg)
    sparse = list(model.bag.parameters()) + list(model.wide.parameters())
    dense = [p for n, p in model.named_parameters() if not n.startswith(("bag.", "wide."))]
    opt_bag = torch.optim.SparseAdam(sparse, lr=cfg.lr)
    opt = torch.optim.AdamW(dense, lr=cfg.lr, weight_decay=1e-4)
    yt, rng, best, history = torch.from_numpy(y), np.random.default_rng(cfg.seed), None, []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.time()
        for idx in np.array_split(rng.permutation(len(y)), max(len(y) // cfg.batch_size, 1)):
            loss = nn.functional.cross_entropy(model(*bags(x[idx])), yt[idx], label_smoothing=cfg.label_smoothing)
            opt_bag.zero_grad()
            opt.zero_grad()
            loss.backward()
            opt_bag.step()
            opt.step()
        pred = predict_proba(model, xv).argmax(1)
        row = {"epoch": epoch, **scores(yv, pred), "seconds": round(time.time() - t0, 1)}
        history.append(row)
        log(f"  epoch {epoch}: val accuracy {row['accuracy']:.4f}, macro-F1 {row['macro_f1']:.4f} "
            f"({row['seconds']} s)")
        if best is None or row["accuracy"] > best[0]["accuracy"]:
            best = (row, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    return model.eval(), {"epoch": best[0]["epoch"], "val": {k: best[0][k] for k in ("accuracy", "macro_f1")},
                          "history": history}


# --- the baseline and the comparison ----------------------------------------------------------------------
def word_rows(texts: dict) -> dict:
    """The baseline's word features: TF-IDF of all word 1-2-grams (min_df 2), fitted on train, rows per split."""
    vec = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2), dtype=np.float32)
    rows = {"train": vec.fit_transform(texts["train"])}
    return rows | {s: vec.transform(t) for s, t in texts.items() if s != "train"}


def baseline_logp(features: str, xs: dict, y_train: np.ndarray, c: float, classes: int, jobs: int = 1) -> dict:
    """One baseline fit and its val and test log-probabilities. `features` (BASELINE_FEATURES): "word" = all word
    1-2-grams (word_rows) with a multinomial LR (lbfgs); "word+char" = word 1-2 + char 3-5-grams (the model's
    whole-text blocks) with a one-vs-rest LR (liblinear: a multinomial lbfgs fit on them ran past 30 CPU-minutes
    without finishing). Every C is a cold start: warm-started from the previous C's solution, lbfgs stops at once
    (the penalty's gradient changes by ~|w| / (C n), under its tolerance) and every C scores the same."""
    if features == "word+char":
        clf = fit_one_vs_rest(xs["train"], y_train, c, classes, jobs)
        return {s: np.log(clf.proba(xs[s]) + 1e-12) for s in ("val", "test")}
    lr = LogisticRegression(C=c, max_iter=500).fit(xs["train"], y_train)
    logp = {s: np.full((xs[s].shape[0], classes), -30.0) for s in ("val", "test")}  # a section absent from y: ~0
    for s in logp:
        logp[s][:, lr.classes_] = lr.predict_log_proba(xs[s])
    return logp


def tfidf_logreg(texts: dict, y: dict, cfg: SectionConfig, block: dict, classes: int, jobs: int = 1,
                 log=None) -> dict:
    """TF-IDF + logistic regression, tuned on val: BASELINE_FEATURES x C (cfg.tfidf_cs), the best by val
    accuracy; `block`: the model's word + char rows per split, reused. Returns the chosen setting, the grid and
    its val and test log-probabilities."""
    log = log or say
    grid, best = [], None
    for features in BASELINE_FEATURES:
        xs = word_rows(texts) if features == "word" else block
        for c in sorted(cfg.tfidf_cs):
            logp = baseline_logp(features, xs, y["train"], c, classes, jobs)
            row = {"features": features, "C": c, **scores(y["val"], logp["val"].argmax(1))}
            grid.append(row)
            log(f"  tf-idf + LR [{features}] C={c:g}: val accuracy {row['accuracy']:.4f}, "
                f"macro-F1 {row['macro_f1']:.4f}")
            if best is None or row["accuracy"] > best[0]["accuracy"]:
                best = (row, logp)
    return {"choice": best[0], "grid": grid, "logp": best[1]}


def choose_share(p_net: np.ndarray, p_linear: np.ndarray, y: np.ndarray, shares=(0.0, 0.25, 0.5, 0.75)) -> dict:
    """The linear part's share of the averaged probabilities, by val accuracy (0 = the network alone)."""
    rows = [{"share": a, **scores(y, mix(p_net, p_linear, a).argmax(1))} for a in shares]
    return {"share": max(rows, key=lambda r: r["accuracy"])["share"], "grid": rows}


def log_prior(y_train: np.ndarray, classes: int) -> np.ndarray:
    """log of each class's share of the training labels (a class never seen counts once)."""
    counts = np.maximum(np.bincount(y_train, minlength=classes), 1)
    return np.log(counts / counts.sum())


def choose_prior_shift(logp: np.ndarray, y: np.ndarray, log_prior: np.ndarray,
                       taus=tuple(np.round(np.arange(0.0, 1.01, 0.1), 1))) -> dict:
    """Post-hoc logit adjustment (Menon et al., 2021): argmax of log p - tau * log prior. A model trained on
    skewed labels leans to the frequent sections; tau > 0 moves the rare ones' borderline texts back, buying
    macro-F1 for a little accuracy. tau by val accuracy + macro-F1 (0 = no shift); the same rule for the
    baseline and the model."""
    rows = [{"tau": float(t), **scores(y, (logp - t * log_prior).argmax(1))} for t in taus]
    return {"tau": max(rows, key=lambda r: r["accuracy"] + r["macro_f1"])["tau"], "grid": rows}


def scores(y: np.ndarray, pred: np.ndarray) -> dict:
    return {"accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0))}


def paired_bootstrap(y: np.ndarray, a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0,
                     groups: np.ndarray | None = None) -> dict:
    """95% percentile intervals of (a - b) in accuracy and macro-F1, resampling the test items with
    replacement (the same resample for both models). With `groups` (e.g. each item's source package), whole
    groups are resampled instead: items of one group are not independent (a source's -dev, -doc and runtime
    descriptions are near-copies, and a model right on one is right on all), and an item resample then gives
    too narrow an interval."""
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = np.arange(len(y))
    order = np.argsort(groups, kind="stable")
    _, starts, sizes = np.unique(groups[order], return_index=True, return_counts=True)
    diffs = {"accuracy": [], "macro_f1": []}
    for _ in range(n):
        g = rng.integers(0, len(sizes), len(sizes))
        i = order[np.repeat(starts[g] - np.cumsum(sizes[g]) + sizes[g], sizes[g]) + np.arange(sizes[g].sum())]
        sa, sb = scores(y[i], a[i]), scores(y[i], b[i])
        for k in diffs:
            diffs[k].append(sa[k] - sb[k])
    point_a, point_b = scores(y, a), scores(y, b)
    return {k: {"difference": point_a[k] - point_b[k], "ci95": [float(np.percentile(v, 2.5)),
                                                                float(np.percentile(v, 97.5))]}
            for k, v in diffs.items()} | {"resamples": n, "unit": "item" if len(sizes) == len(y) else "group",
                                          "units": int(len(sizes))}


# --- data, training, export -------------------------------------------------------------------------------
def section_data(split_seed: int = 0, max_train: int = 0, seed: int = 0) -> tuple[dict, dict, list[str]]:
    """Texts and label ids per split of `debian-packages` (the labels: every section, sorted)."""
    from dlm_core.data import load_dataset

    ds = load_dataset("debian-packages", seed=split_seed)
    labels = sorted({d["section"] for d in ds.docs})
    code = {s: i for i, s in enumerate(labels)}
    texts, y = {}, {}
    for split in ("train", "val", "test"):
        idx = getattr(ds, split)
        if split == "train" and max_train and len(idx) > max_train:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_train, replace=False))
        texts[split] = [ds.docs[i]["text"] for i in idx]
        y[split] = np.array([code[ds.docs[i]["section"]] for i in idx])
    return texts, y, labels


def section_sources(split_seed: int = 0) -> dict[str, np.ndarray]:
    """Each document's source package per split (all of train, in section_data's order): the unit that the
    dataset's split keeps on one side, and that a bootstrap should resample (paired_bootstrap's `groups`)."""
    from dlm_core.data import load_dataset

    ds = load_dataset("debian-packages", seed=split_seed)
    return {split: np.array([ds.docs[i]["source"] for i in getattr(ds, split)]) for split in ("train", "val", "test")}


def fit_section_model(texts: dict, y: dict, labels: list[str], cfg: SectionConfig, log=None):
    """Vectorizers fitted on the training texts, the MLP trained and its epoch chosen on val."""
    log = log or say
    t0 = time.time()
    vecs = fit_vectorizers(texts["train"], cfg)
    x = {s: transform(vecs, texts[s]) for s in texts}
    log(f"features: {x['train'].shape[1]:,} n-grams, {x['train'].nnz / x['train'].shape[0]:.0f} per text "
        f"({time.time() - t0:.0f} s)")
    model, choice = train_mlp(x["train"], y["train"], x["val"], y["val"], len(labels), cfg, log)
    return vecs, model, choice, x


def export_bundle(vecs, model: NgramMLP, labels: list[str], val_texts: list[str], metrics: dict, prov: dict,
                  name: str, version: str, overwrite: bool, root=None, files: dict | None = None,
                  linear: LinearPart | None = None, shift: np.ndarray | None = None):
    exported = PaddedNgramMLP(model, linear, shift)
    ref_ids, ref_w = padded(transform(vecs, val_texts[:16]))
    with tempfile.TemporaryDirectory(prefix="p06-section-") as tmp:
        tmp = Path(tmp)
        batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("length", min=2)
        onnx_export(exported, (torch.from_numpy(ref_ids[:2]), torch.from_numpy(ref_w[:2])), tmp / "model.onnx",
                    ["feature_ids", "feature_weights"], ["logits", "embedding"],
                    ({0: batch, 1: length}, {0: batch, 1: length}))
        write_json(tmp / "ngrams.json", ngram_spec(vecs))
        # every validation text (the split is ordered by package name, and by source package: a prefix would
        # be a skewed sample of sections); a small split is repeated to the 500 rows a reference needs
        drift = val_texts if len(val_texts) >= 500 else (val_texts * 500)[:500]
        return save_bundle(
            name, version, task="text-classification", graphs={"model": tmp / "model.onnx"},
            preprocess={"type": "ngrams", "ids_input": "feature_ids", "weights_input": "feature_weights",
                        "vocabulary": "ngrams.json"},
            postprocess={"type": "softmax_topk", "graph": "model", "output": "logits", "labels": labels, "top_k": 3,
                         "embedding_output": "embedding"},
            reference=torch_reference(exported, "model", {"feature_ids": ref_ids, "feature_weights": ref_w},
                                      ["logits", "embedding"]),
            metrics=metrics, provenance=prov, drift_inputs=drift,
            files={"ngrams.json": tmp / "ngrams.json", **(files or {})}, overwrite=overwrite, root=root)


def with_baseline(texts: dict, y: dict, x: dict, cfg: SectionConfig, p_net: dict, result: dict, n_text: int,
                  classes: int, log, jobs: int = 2) -> tuple[LinearPart, dict, dict]:
    """The model's linear part (a one-vs-rest LR over all its columns, C = cfg.linear_c) joins the network at a
    share chosen on val; then the baseline grid, whose word + char candidate reuses the model's first `n_text`
    columns. Returns the linear part, the mix's probabilities and the baseline's log-probabilities (val, test)."""
    t0 = time.time()
    linear = fit_one_vs_rest(x["train"], y["train"], cfg.linear_c, classes, jobs)
    p_lin = {s: linear.proba(x[s]) for s in ("val", "test")}
    share = choose_share(p_net["val"], p_lin["val"], y["val"])
    linear.share = share["share"]
    result["linear_part"] = {"features": "all the model's columns", "C": cfg.linear_c, **share}
    log(f"linear part: one-vs-rest LR, C={cfg.linear_c:g}, share {linear.share} "
        f"(val {max(r['accuracy'] for r in share['grid']):.4f}; {time.time() - t0:.0f} s)")
    block = {s: x[s][:, :n_text] for s in ("train", "val", "test")}
    base = tfidf_logreg(texts, y, cfg, block, classes, jobs, log)
    result |= {"tfidf_choice": base["choice"], "tfidf_grid": base["grid"]}
    return linear, {s: mix(p_net[s], p_lin[s], linear.share) for s in p_net}, base["logp"]


def shifted_scores(logp: dict, y: dict, prior: np.ndarray, log, who: str) -> tuple[dict, np.ndarray]:
    """tau chosen on val (choose_prior_shift); the test scores with and without it, and the test predictions."""
    shift = choose_prior_shift(logp["val"], y["val"], prior)
    pred = (logp["test"] - shift["tau"] * prior).argmax(1)
    log(f"{who}: prior shift tau {shift['tau']} (val accuracy + macro-F1 "
        f"{max(r['accuracy'] + r['macro_f1'] for r in shift['grid']):.4f})")
    unshifted = scores(y["test"], logp["test"].argmax(1))
    return {**scores(y["test"], pred), "unshifted": unshifted, "prior_shift": shift}, pred


def train_and_export(cfg: SectionConfig, version: str, name: str = BUNDLE_NAME, overwrite: bool = False,
                     baseline: bool = True, out_dir: Path | None = None, root=None, log=None) -> dict:
    """Train (and with `baseline`, mix a linear part into the network and tune the baseline),
    shift both by the train prior as val says, score on test, export. Without the baseline the model is the
    network alone."""
    log = log or say
    texts, y, labels = section_data(max_train=cfg.max_train, seed=cfg.seed)
    log(f"section classifier: {len(labels)} sections, {len(y['train'])} train / {len(y['val'])} val / "
        f"{len(y['test'])} test packages")
    t0 = time.time()
    vecs, model, choice, x = fit_section_model(texts, y, labels, cfg, log)
    p_net = {s: predict_proba(model, x[s]) for s in ("val", "test")}
    prior = log_prior(y["train"], len(labels))
    result = {"choice": choice, "config": dataclasses.asdict(cfg), "sections": len(labels),
              "test_packages": int(len(y["test"])),
              "majority_class": scores(y["test"], np.full_like(y["test"], np.bincount(y["train"]).argmax()))}
    linear, p_model = None, p_net
    if baseline:
        result["network_alone"], _ = shifted_scores({s: np.log(p + 1e-12) for s, p in p_net.items()}, y, prior,
                                                    log, "network")
        n_text = len(vecs[0].vocabulary_) + len(vecs[1].vocabulary_)  # the whole text's word and char blocks
        linear, p_model, base_logp = with_baseline(texts, y, x, cfg, p_net, result, n_text, len(labels), log)
        result["tfidf_logreg"], base_pred = shifted_scores(base_logp, y, prior, log, "tf-idf + LR")
    result["model"], test_pred = shifted_scores({s: np.log(p + 1e-12) for s, p in p_model.items()}, y, prior, log,
                                                "model")
    if baseline:
        # by source package (the one to read: a source's documents are not independent), and by item
        result["bootstrap_model_minus_tfidf"] = paired_bootstrap(y["test"], test_pred, base_pred,
                                                                 groups=section_sources()["test"])
        result["bootstrap_model_minus_tfidf_by_item"] = paired_bootstrap(y["test"], test_pred, base_pred)
    result["train_seconds"] = round(time.time() - t0, 1)
    log(json.dumps({k: {m: round(result[k][m], 4) for m in ("accuracy", "macro_f1")}
                    for k in ("model", "network_alone", "tfidf_logreg") if k in result}))
    if baseline:
        log(json.dumps(result["bootstrap_model_minus_tfidf"]))
    values = {"accuracy": result["model"]["accuracy"], "macro_f1": result["model"]["macro_f1"],
              "majority_accuracy": result["majority_class"]["accuracy"], "test_packages": result["test_packages"]}
    if baseline:
        values |= {"tfidf_logreg_accuracy": result["tfidf_logreg"]["accuracy"],
                   "tfidf_logreg_macro_f1": result["tfidf_logreg"]["macro_f1"]}
    with tempfile.TemporaryDirectory() as tmp:
        write_json(Path(tmp) / "choice.json", result)
        bundle = export_bundle(
            vecs, model, labels, texts["val"], {"split": "test", "headline": "accuracy", "values": values},
            provenance("p06_contrastive", out_dir or "", "debian-packages", 0, cfg.seed, dataclasses.asdict(cfg)),
            name, version, overwrite, root, files={"choice.json": Path(tmp) / "choice.json"}, linear=linear,
            shift=result["model"]["prior_shift"]["tau"] * prior)
    if out_dir:
        write_json(Path(out_dir) / "section_result.json", result)
    log(f"bundle: {bundle.path}")
    return {"bundle": str(bundle.path), **result}
