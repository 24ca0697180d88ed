"""Train the bi-encoder with symmetric InfoNCE on (synopsis, long description) pairs of the training split.

Per epoch: shuffled pairs (seeded; a resumed run sees the same order), AdamW with warmup + cosine decay,
gradient clipping, then validation MRR@10 / Recall@10 of the validation queries against their documents
plus distractors, the per-dimension spread of the embeddings (collapse check), a checkpoint.

    data = prepare_data(cfg, ds, run, resume)     token ids of the pairs and the validation set, BM25 negatives
    model, opt = build_model(cfg, data, device)
    per epoch: train_one_epoch(...)                InfoNCE steps over epoch_batches(...), batch_ids(...) each
               evaluate(model, data, cfg, device)  the validation row; checkpoint; re-mine negative_pool(...)
    then the best epoch's summary (train.json), plots and report_text(...) (report.md)
"""

from __future__ import annotations

import dataclasses
import time

import bm25s
import numpy as np
import torch

from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
from dlm_core.device import select_device
from dlm_core.errors import check_finite
from dlm_core.optim import decay_groups, warmup_cosine
from dlm_core.plotting import plot_curves
from dlm_core.runs import RunDir, print_metrics, progress
from dlm_core.seed import data_rng, seed_everything

from .config import Config
from .data import encode, inverse_cloze, load_corpus, load_tokenizer, token_dropout, train_tokenizer, trim
from .evaluate import exact_search, rank_metrics
from .index import set_threads
from .model import ContrastiveModel, build_encoder, embed, encoder_version, info_nce


def mine_hard_negatives(queries: list[str], docs: list[str], k: int = 10) -> np.ndarray:
    """(N, k): for query i (whose positive is docs[i]) its best k BM25 documents that are not docs[i]
    (a row with fewer candidates repeats its last one)."""
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)
    top, _ = retriever.retrieve(bm25s.tokenize(queries, stopwords="en", show_progress=False),
                                k=min(k + 1, len(docs)), show_progress=False, n_threads=1)
    return others_than_self(top, k, len(docs))


def others_than_self(top, k: int, n_docs: int) -> np.ndarray:
    """(N, k) from ranked candidate rows: row i without document i, cut to k; a short row repeats its last."""
    out = np.empty((len(top), k), dtype=np.int64)
    for i, row in enumerate(top):
        others = [int(j) for j in row if j != i][:k] or [(i + 1) % n_docs]
        out[i] = others + others[-1:] * (k - len(others))
    return out


def mine_dense_negatives(encoder, q_ids: np.ndarray, d_ids: np.ndarray, k: int, batch_size: int, device) -> np.ndarray:
    """(N, k): the encoder's own top-k training documents for each training query, the positive excluded
    (re-mined after every epoch: the negatives the current model finds hardest)."""
    ids, _ = exact_search(embed(encoder, q_ids, batch_size, device, query=True),
                          embed(encoder, d_ids, batch_size, device),
                          k=min(k + 1, len(d_ids)))
    return others_than_self(ids, k, len(d_ids))


def log_idf(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """log(N / (1 + document frequency)) per token id over padded id rows (padding counted nowhere)."""
    df = np.zeros(vocab_size, dtype=np.int64)
    for row in ids:
        df[np.unique(row[row != 0])] += 1
    return np.log(len(ids) / (1.0 + df)).astype(np.float32)


def validation_set(ds, cfg: Config):
    """Validation queries and a corpus of their documents + seeded distractors (never test documents)."""
    val_docs = np.asarray(ds.val)
    banned = np.zeros(len(ds.docs), dtype=bool)
    banned[ds.test] = True
    banned[val_docs] = True
    pool = np.nonzero(~banned)[0]
    extra = np.random.default_rng(cfg.seed).choice(pool, min(cfg.val_distractors, len(pool)), replace=False)
    corpus = np.concatenate([val_docs, np.sort(extra)])
    return [ds.docs[i]["synopsis"] for i in val_docs], corpus, np.arange(len(val_docs))


@dataclasses.dataclass
class TrainingData:
    """Token ids of the training pairs and of the validation queries and corpus, and the BM25 negative pool."""
    tokenizer: object
    q_ids: np.ndarray              # (n, max_query_len) training queries (synopses)
    d_ids: np.ndarray              # (n, max_doc_len) their documents (long descriptions)
    bm25_hard: np.ndarray | None   # (n, hard_pool) BM25 candidates per query; None without hard negatives
    val_q_ids: np.ndarray
    val_d_ids: np.ndarray          # the validation queries' documents, then the distractors
    val_rel: np.ndarray            # the relevant corpus row of each validation query

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()


def prepare_data(cfg: Config, ds, run, resume: bool) -> TrainingData:
    """The training pairs (capped at --max-train-pairs), the tokenizer (trained on them, or the run's own on a
    resume), the BM25 hard-negative pool and the validation set, as token ids."""
    train_idx = np.asarray(ds.train)
    if cfg.max_train_pairs:
        train_idx = np.sort(np.random.default_rng(cfg.seed).permutation(train_idx)[: cfg.max_train_pairs])
    train_q = [ds.docs[i]["synopsis"] for i in train_idx]
    train_d = [ds.docs[i]["text"] for i in train_idx]
    tok_path = run.file("tokenizer.json")
    if resume and tok_path.exists():
        tok = load_tokenizer(tok_path)
    else:  # the tokenizer sees the training split only
        tok = train_tokenizer(train_q + train_d, cfg.vocab_size)
        tok.save(str(tok_path))
    q_ids = encode(tok, train_q, cfg.max_query_len)
    d_ids = encode(tok, train_d, cfg.max_doc_len)
    bm25_hard = mine_hard_negatives(train_q, train_d, cfg.hard_pool) if cfg.hard_negatives else None
    val_q, val_corpus, val_rel = validation_set(ds, cfg)
    return TrainingData(tok, q_ids, d_ids, bm25_hard, encode(tok, val_q, cfg.max_query_len),
                        encode(tok, [ds.docs[i]["text"] for i in val_corpus], cfg.max_doc_len), val_rel)


def build_model(cfg: Config, data: TrainingData, device):
    """The bi-encoder on `device` and its AdamW (no weight decay on the position table and pooling scores)."""
    model = ContrastiveModel(build_encoder(cfg, data.vocab_size), cfg.temperature, cfg.learn_temperature)
    if cfg.lexical_dim:  # the lexical channel starts as a TF-IDF bag: weights ~ idf of the training documents
        model.encoder.init_lexical_scores(log_idf(data.d_ids, data.vocab_size))
    model.to(device)
    # matrices, not the position table nor the pooling scores
    groups = decay_groups(model, cfg.weight_decay, exempt=lambda name, p: "pos" in name or "token_weight" in name)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, fused=device.type in ("cpu", "cuda"))  # one kernel over the embeddings
    return model, opt


def negative_pool(model, data: TrainingData, cfg: Config, device) -> np.ndarray:
    """BM25's candidates + the current encoder's own top-N (re-mined after each epoch with --dense-negatives)."""
    return np.concatenate([data.bm25_hard, mine_dense_negatives(
        model.encoder, data.q_ids, data.d_ids, cfg.hard_pool, cfg.eval_batch_size, device)], 1)


def epoch_batches(n: int, n_ict: int, batch_size: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """One epoch's ("pair" | "ict", row indices) batches: the shuffled pairs, and with n_ict > 0 inverse-cloze
    batches of n_ict random training documents shuffled in among them. The ragged last batches are dropped:
    every step has the same number of negatives."""
    order = rng.permutation(n)
    batches = [("pair", order[i:i + batch_size]) for i in range(0, n - batch_size + 1, batch_size)]
    if n_ict:
        docs_for_ict = rng.choice(n, n_ict, replace=n_ict > n)
        batches += [("ict", docs_for_ict[i:i + batch_size]) for i in range(0, n_ict - batch_size + 1, batch_size)]
        batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches


def batch_ids(kind: str, b: np.ndarray, data: TrainingData, hard: np.ndarray | None, cfg: Config,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(query ids, document ids) of one batch: an inverse-cloze batch cuts its queries out of its documents; a
    pair batch has its positives, then cfg.hard_negatives fresh draws from each query's candidate pool, with
    token dropout."""
    if kind == "ict":
        return inverse_cloze(data.d_ids[b], rng, cfg.max_query_len)
    parts = [data.d_ids[b]]
    for _ in range(cfg.hard_negatives):  # fresh draws from the candidate pool
        parts.append(data.d_ids[hard[b, rng.integers(0, hard.shape[1], len(b))]])
    return data.q_ids[b], token_dropout(np.concatenate(parts), cfg.token_dropout, rng)


def train_one_epoch(model, opt, data: TrainingData, hard: np.ndarray | None, cfg: Config, device, run, epoch: int,
                    step: int, total_steps: int) -> tuple[float, int]:
    """One epoch of InfoNCE steps (warmup + cosine learning rate, gradient clipping); a metrics row every 20
    steps. Returns (mean training loss, global step after the epoch)."""
    model.train()
    rng = data_rng(cfg.seed, epoch)  # order, cloze spans and dropped tokens: the same after a resume
    batches = epoch_batches(len(data.q_ids), int(cfg.ict * len(data.q_ids)), cfg.batch_size, rng)
    total = 0.0
    bar = progress(batches, desc=f"epoch {epoch}")
    for kind, b in bar:
        lr = warmup_cosine(step, total_steps, cfg.warmup_steps, cfg.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        queries, docs = batch_ids(kind, b, data, hard, cfg, rng)
        q = model.encoder(torch.from_numpy(trim(queries)).to(device), query=True)
        d_tok = torch.from_numpy(trim(docs)).to(device)
        d = model.encoder(d_tok)
        loss = info_nce(q, d, model.scale(), cfg.symmetric)
        if cfg.dropout_positives:  # SimCSE: the same documents under a second dropout mask are positives
            d2 = model.encoder(d_tok[: len(b)])
            loss = loss + 0.5 * info_nce(d[: len(b)], d2, model.scale())
        step += 1
        check_finite(loss.item(), step, lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        total += loss.item()
        bar.set_postfix(loss=f"{loss.item():.3f}", T=f"{model.temperature:.3f}")
        if step % 20 == 0:
            run.log(step=step, during_epoch=epoch, loss=loss.item(), lr=lr, temperature=model.temperature)
    return total / max(1, len(batches)), step


def evaluate(model, data: TrainingData, cfg: Config, device) -> dict:
    """Validation MRR@10 / Recall@10 of the validation queries against their documents + distractors, the
    temperature, and the mean per-dimension spread of the corpus embeddings (a collapse check)."""
    vq = embed(model.encoder, data.val_q_ids, cfg.eval_batch_size, device, query=True)
    vd = embed(model.encoder, data.val_d_ids, cfg.eval_batch_size, device)
    m = rank_metrics(exact_search(vq, vd, data.val_rel, k=100)[1])
    return {"val_mrr10": m["mrr@10"], "val_recall10": m["recall@10"], "temperature": model.temperature,
            "emb_dim_std": float(vd.std(0).mean())}


def report_text(cfg: Config, ds, data: TrainingData, summary: dict, temperature: float, run_path) -> str:
    encoder = f"{cfg.layers}-block transformer" if cfg.layers else "bag of token embeddings (no transformer block)"
    pooling = "learned weighted" if cfg.pool == "weighted" else "plain"
    objective = "symmetric" if cfg.symmetric else "query->document"
    paragraphs = [
        "# p06_contrastive training",
        f"Data: debian-packages snapshot `{ds.info['sha256'][:16]}` ({len(ds.docs)} documents), "
        f"{len(data.q_ids)} training pairs, {len(data.val_q_ids)} validation queries vs {len(data.val_d_ids)} "
        "documents.",
        f"Encoder: {encoder}, dim {cfg.dim}, vocab {data.vocab_size}, {pooling} mean pooling, L2-normalised; "
        f"{objective} InfoNCE, {cfg.hard_negatives} hard negatives, batch {cfg.batch_size}, "
        f"final temperature {temperature:.4f}.",
        f"Best epoch {summary['best_epoch']}: val MRR@10 {summary['best_val_mrr10']:.4f}; "
        f"encoder version `{summary['encoder_version']}`.",
        "![loss](loss.png) ![val](val.png)",
        f"Test metrics: `run_retrieval_evaluate {run_path}`.",
    ]
    return "\n\n".join(paragraphs) + "\n"


def run_train(cfg: Config, run_dir=None, resume: bool = False, preset: str = "default") -> dict:
    """Train (or resume) a run; the best epoch on validation MRR@10 is kept. Returns train.json + run_dir."""
    seed_everything(cfg.seed)
    device = select_device(cfg.device)
    set_threads(cfg.threads)
    ds = load_corpus(cfg.split_seed, cfg.max_corpus)
    run = RunDir.create("p06_contrastive", cfg) if run_dir is None else RunDir.at(run_dir, cfg)
    run.write_json("data.json", {**ds.info, "preset": preset})
    data = prepare_data(cfg, ds, run, resume)
    model, opt = build_model(cfg, data, device)
    remine = cfg.dense_negatives and cfg.hard_negatives > 0

    hard = data.bm25_hard
    ckpt = Checkpointer(run.checkpoint_dir)
    start_epoch, best = 1, -1.0
    if resume and (state := resume_training(ckpt, model, opt, run, epoch_key=("epoch", "during_epoch"))) is not None:
        start_epoch, best = state["epoch"] + 1, state["best"]
        if remine:  # the pool the finished epoch's model mined
            hard = negative_pool(model, data, cfg, device)

    n = len(data.q_ids)
    # drop the ragged last batches: every step has the same number of negatives
    steps_per_epoch = n // cfg.batch_size + int(cfg.ict * n) // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs
    step = (start_epoch - 1) * steps_per_epoch
    print(f"pairs: {n} train, {len(data.val_q_ids)} val queries vs {len(data.val_d_ids)} docs | vocab "
          f"{data.vocab_size} | params {sum(p.numel() for p in model.parameters()):,} | device {device}", flush=True)
    last = {}
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss, step = train_one_epoch(model, opt, data, hard, cfg, device, run, epoch, step, total_steps)
        last = {"epoch": epoch, "train_loss": train_loss, **evaluate(model, data, cfg, device),
                "seconds": time.perf_counter() - t0}
        is_best = last["val_mrr10"] > best
        best = max(best, last["val_mrr10"])
        run.log(**last)
        print_metrics(**{k: v for k, v in last.items() if k != "seconds"}, sec=last["seconds"])
        ckpt.save(epoch, {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                          "best": best, "config": dataclasses.asdict(cfg), "vocab_size": data.vocab_size},
                  is_best=is_best)
        if remine and epoch < cfg.epochs:
            hard = negative_pool(model, data, cfg, device)

    state = ckpt.best()
    model.load_state_dict(state["model"])
    summary = {"best_epoch": int(state["epoch"]), "best_val_mrr10": best,
               "encoder_version": encoder_version(model.encoder), "train_pairs": n,
               "corpus_sha256": ds.info["sha256"], "last": last}
    rows = run.metrics()
    plot_curves(rows, "step", ["loss"], run.file("loss.png"), title="InfoNCE loss (training batches)")
    plot_curves(rows, "epoch", ["val_mrr10", "val_recall10"], run.file("val.png"),
                title=f"validation ({len(data.val_q_ids)} queries vs {len(data.val_d_ids)} docs)")
    run.write_json("train.json", summary)
    run.write_report(report_text(cfg, ds, data, summary, model.temperature, run.path))
    print(f"run: {run.path}", flush=True)
    return {**summary, "run_dir": str(run.path)}
