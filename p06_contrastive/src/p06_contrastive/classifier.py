"""A text classifier on the contrastive encoder: a package description -> its Debian section (58 classes).

A linear head (softmax regression) on the frozen encoder's document embeddings, trained on the training
split's packages; weight decay and the number of epochs are chosen on the validation packages. Beside it,
TF-IDF + logistic regression (its C chosen on val) on the same split. Exported as its own bundle
(`package-section`): one graph, token ids -> (logits, embedding), with the same int8 tables as the search.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from dlm_core.bundle import provenance
from dlm_core.bundle_write import save_bundle
from dlm_core.export import text_preprocess, torch_reference
from dlm_core.io import write_json

from .data import encode, load_corpus
from .evaluate import load_run
from .export import export_side, side_module, text_embeddings

BUNDLE_NAME = "package-section"


class SectionClassifier(nn.Module):
    """ids -> (logits, embedding): the document side of the encoder, then one linear layer."""

    def __init__(self, encoder_side: nn.Module, head: nn.Linear):
        super().__init__()
        self.encoder_side, self.head = encoder_side, head

    def forward(self, ids: torch.Tensor):
        emb = self.encoder_side(ids)
        return self.head(emb), emb


def fit_head(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, classes: int, seed: int,
             decays=(0.0, 1e-4, 1e-3), epochs: int = 30, batch_size: int = 256) -> tuple[nn.Linear, dict]:
    """Softmax regression with AdamW on standardised features (train mean/std); (weight decay, epoch) chosen
    by validation accuracy. The standardisation is folded into the returned layer, which takes raw features."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt, yt, xvt = torch.from_numpy((x - mu) / sd), torch.from_numpy(y), torch.from_numpy((xv - mu) / sd)
    best, grid = None, []
    for wd in decays:
        torch.manual_seed(seed)
        head = nn.Linear(x.shape[1], classes)
        opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=wd)
        g = torch.Generator().manual_seed(seed)
        for epoch in range(1, epochs + 1):
            for idx in torch.randperm(len(xt), generator=g).split(batch_size):
                loss = nn.functional.cross_entropy(head(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                acc = float((head(xvt).argmax(1).numpy() == yv).mean())
            grid.append({"weight_decay": wd, "epoch": epoch, "val_accuracy": acc})
            if best is None or acc > best[0]:
                best = (acc, wd, epoch, {k: v.clone() for k, v in head.state_dict().items()})
    head = nn.Linear(x.shape[1], classes)
    w, b = best[3]["weight"], best[3]["bias"]  # W (x - mu) / sd + b = (W / sd) x + (b - W mu / sd)
    with torch.no_grad():
        head.weight.copy_(w / torch.from_numpy(sd))
        head.bias.copy_(b - w @ torch.from_numpy(mu / sd))
    with torch.no_grad():
        train_acc = float((head(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    return head.eval(), {"weight_decay": best[1], "epochs": best[2], "val_accuracy": best[0],
                         "train_accuracy": train_acc, "grid": grid}


def tfidf_baseline(train_texts, ytr, val_texts, yv, test_texts, Cs=(1.0, 10.0, 100.0)) -> dict:
    """TF-IDF (words and word pairs, sublinear tf) + multinomial logistic regression, C chosen on val."""
    vec = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2), max_features=50_000)
    xtr, xv, xte = vec.fit_transform(train_texts), vec.transform(val_texts), vec.transform(test_texts)
    scored = []
    clf = LogisticRegression(max_iter=200, warm_start=True)  # each C starts from the previous C's solution
    for c in sorted(Cs):
        clf.set_params(C=c).fit(xtr, ytr)
        scored.append((float((clf.predict(xv) == yv).mean()), c, clf.coef_.copy(), clf.intercept_.copy()))
    acc, c, coef, intercept = max(scored, key=lambda t: t[0])
    clf.coef_, clf.intercept_ = coef, intercept
    return {"C": c, "val_accuracy": acc, "val_by_C": {str(s[1]): s[0] for s in scored}, "test_pred": clf.predict(xte)}


def scores(y: np.ndarray, pred: np.ndarray) -> dict:
    return {"accuracy": float(accuracy_score(y, pred)), "macro_f1": float(f1_score(y, pred, average="macro"))}


def train_and_export(run_path, version: str | None = None, overwrite: bool = False, name: str = BUNDLE_NAME,
                     seed: int = 0, epochs: int = 30, tfidf_cs=(1.0, 10.0, 100.0)) -> dict:
    lr = load_run(run_path)
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    labels = sorted({d["section"] for d in ds.docs})
    code = {s: i for i, s in enumerate(labels)}
    split = {s: getattr(ds, s) for s in ("train", "val", "test")}
    texts = {s: [ds.docs[i]["text"] for i in idx] for s, idx in split.items()}
    y = {s: np.array([code[ds.docs[i]["section"]] for i in idx]) for s, idx in split.items()}
    doc_side = side_module(lr.encoder, query=False, int8=True)
    emb = {s: text_embeddings(lr, texts[s], int8=True) for s in split}
    print(f"section classifier: {len(labels)} sections, {len(y['train'])} train / {len(y['val'])} val / "
          f"{len(y['test'])} test packages, embeddings {emb['train'].shape[1]}-d", flush=True)
    head, choice = fit_head(emb["train"], y["train"], emb["val"], y["val"], len(labels), seed, epochs=epochs)
    model = SectionClassifier(doc_side, head).eval()
    with torch.no_grad():
        test_pred = head(torch.from_numpy(emb["test"])).argmax(1).numpy()
    base = tfidf_baseline(texts["train"], y["train"], texts["val"], y["val"], texts["test"], tfidf_cs)
    prior = np.full_like(y["test"], np.bincount(y["train"]).argmax())
    result = {"model": scores(y["test"], test_pred), "tfidf_logreg": scores(y["test"], base["test_pred"]),
              "majority_class": scores(y["test"], prior),
              "choice": {k: v for k, v in choice.items() if k != "grid"},
              "tfidf_choice": {k: v for k, v in base.items() if k != "test_pred"}, "sections": len(labels)}
    print(json.dumps({k: result[k] for k in ("model", "tfidf_logreg", "majority_class")}), flush=True)
    ref_ids = encode(lr.tokenizer, texts["val"][:16], lr.cfg.max_doc_len)
    with tempfile.TemporaryDirectory(prefix="p06-cls-") as tmp:
        tmp = Path(tmp)
        export_side(model, tmp / "model.onnx", lr.cfg.max_doc_len, ("logits", "embedding"))
        write_json(tmp / "choice.json", {**result, "grid": choice["grid"]})
        torch.save(head.state_dict(), tmp / "head.pt")  # the linear head alone, for torch-vs-ORT benches
        values = {"accuracy": result["model"]["accuracy"], "macro_f1": result["model"]["macro_f1"],
                  "tfidf_logreg_accuracy": result["tfidf_logreg"]["accuracy"],
                  "tfidf_logreg_macro_f1": result["tfidf_logreg"]["macro_f1"],
                  "majority_accuracy": result["majority_class"]["accuracy"], "test_packages": int(len(y["test"]))}
        bundle = save_bundle(
            name, version or lr.version, task="text-classification", graphs={"model": tmp / "model.onnx"},
            preprocess=text_preprocess("input_ids", lr.cfg.max_doc_len, truncate=True, min_length=2),
            postprocess={"type": "softmax_topk", "graph": "model", "output": "logits", "labels": labels, "top_k": 3,
                         "embedding_output": "embedding"},
            reference=torch_reference(model, "model", {"input_ids": ref_ids}, ["logits", "embedding"]),
            metrics={"split": "test", "headline": "accuracy", "values": values},
            provenance=provenance("p06_contrastive", lr.path, "debian-packages", lr.cfg.split_seed, seed,
                                  {**vars(lr.cfg), "head_weight_decay": choice["weight_decay"],
                                   "head_epochs": choice["epochs"]}),
            drift_inputs=texts["val"][:1000] if len(texts["val"]) >= 500 else (texts["val"] * 500)[:500],
            files={"tokenizer.json": lr.path / "tokenizer.json", "choice.json": tmp / "choice.json",
                   "head.pt": tmp / "head.pt"},
            overwrite=overwrite)
    print(f"bundle: {bundle.path}", flush=True)
    return {"bundle": str(bundle.path), **result}
