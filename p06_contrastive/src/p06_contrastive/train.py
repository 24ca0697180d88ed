"""Train the bi-encoder with symmetric InfoNCE on (synopsis, long description) pairs of the training split.

Per epoch: shuffled pairs (seeded; a resumed run sees the same order), AdamW with warmup + cosine decay,
gradient clipping, then validation MRR@10 / Recall@10 of the validation queries against their documents
plus distractors, the per-dimension spread of the embeddings (collapse check), a checkpoint.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from dlm_core.optim import warmup_cosine

from .config import Config


def mine_hard_negatives(queries: list[str], docs: list[str], k: int = 10) -> np.ndarray:
    """(N, k): for query i (whose positive is docs[i]) its best k BM25 documents that are not docs[i]
    (a row with fewer candidates repeats its last one)."""
    import bm25s

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
    from .evaluate import exact_search
    from .model import embed

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


def run_train(cfg: Config, run_dir=None, resume: bool = False, preset: str = "default") -> dict:
    import torch

    from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
    from dlm_core.device import select_device
    from dlm_core.errors import check_finite
    from dlm_core.optim import decay_groups
    from dlm_core.plotting import plot_curves
    from dlm_core.runs import RunDir, print_metrics, progress
    from dlm_core.seed import data_rng, seed_everything

    from .data import encode, inverse_cloze, load_corpus, load_tokenizer, token_dropout, train_tokenizer, trim
    from .evaluate import exact_search, rank_metrics
    from .index import set_threads
    from .model import ContrastiveModel, build_encoder, embed, encoder_version, info_nce

    seed_everything(cfg.seed)
    device = select_device(cfg.device)
    set_threads(cfg.threads)
    ds = load_corpus(cfg.split_seed, cfg.max_corpus)
    run = RunDir.create("p06_contrastive", cfg) if run_dir is None else RunDir.at(run_dir, cfg)
    run.write_json("data.json", {**ds.info, "preset": preset})

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
    hard = bm25_hard
    val_q, val_corpus, val_rel = validation_set(ds, cfg)
    val_q_ids = encode(tok, val_q, cfg.max_query_len)
    val_d_ids = encode(tok, [ds.docs[i]["text"] for i in val_corpus], cfg.max_doc_len)

    model = ContrastiveModel(build_encoder(cfg, tok.get_vocab_size()), cfg.temperature, cfg.learn_temperature)
    if cfg.lexical_dim:  # the lexical channel starts as a TF-IDF bag: weights ~ idf of the training documents
        model.encoder.init_lexical_scores(log_idf(d_ids, tok.get_vocab_size()))
    model.to(device)
    # matrices, not the position table nor the pooling scores
    groups = decay_groups(model, cfg.weight_decay, exempt=lambda name, p: "pos" in name or "token_weight" in name)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, fused=device.type in ("cpu", "cuda"))  # one kernel over the embeddings
    remine = cfg.dense_negatives and cfg.hard_negatives > 0

    def remined_pool() -> np.ndarray:  # BM25's candidates + the current encoder's own top-N
        return np.concatenate([bm25_hard, mine_dense_negatives(
            model.encoder, q_ids, d_ids, cfg.hard_pool, cfg.eval_batch_size, device)], 1)

    ckpt = Checkpointer(run.checkpoint_dir)
    start_epoch, best = 1, -1.0
    if resume and (state := resume_training(ckpt, model, opt, run, epoch_key=("epoch", "during_epoch"))) is not None:
        start_epoch, best = state["epoch"] + 1, state["best"]
        if remine:  # the pool the finished epoch's model mined
            hard = remined_pool()

    n = len(train_idx)
    n_ict = int(cfg.ict * n)
    # drop the ragged last batches: every step has the same number of negatives
    steps_per_epoch = n // cfg.batch_size + n_ict // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs
    step = (start_epoch - 1) * steps_per_epoch
    print(f"pairs: {n} train, {len(val_q)} val queries vs {len(val_corpus)} docs | vocab {tok.get_vocab_size()} "
          f"| params {sum(p.numel() for p in model.parameters()):,} | device {device}", flush=True)
    result = {}
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        rng = data_rng(cfg.seed, epoch)  # order, cloze spans and dropped tokens: the same after a resume
        order = rng.permutation(n)
        batches = [("pair", order[i:i + cfg.batch_size]) for i in range(0, n - cfg.batch_size + 1, cfg.batch_size)]
        if n_ict:  # inverse-cloze batches of n_ict random training documents, shuffled in among the pairs
            docs_for_ict = rng.choice(n, n_ict, replace=n_ict > n)
            batches += [("ict", docs_for_ict[i:i + cfg.batch_size])
                        for i in range(0, n_ict - cfg.batch_size + 1, cfg.batch_size)]
            batches = [batches[j] for j in rng.permutation(len(batches))]
        total = 0.0
        bar = progress(batches, desc=f"epoch {epoch}")
        for kind, b in bar:
            lr = warmup_cosine(step, total_steps, cfg.warmup_steps, cfg.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            if kind == "ict":
                queries, docs = inverse_cloze(d_ids[b], rng, cfg.max_query_len)
            else:
                queries = q_ids[b]
                parts = [d_ids[b]]
                for _ in range(cfg.hard_negatives):  # fresh draws from the candidate pool
                    parts.append(d_ids[hard[b, rng.integers(0, hard.shape[1], len(b))]])
                docs = np.concatenate(parts)
                docs = token_dropout(docs, cfg.token_dropout, rng)
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
        vq = embed(model.encoder, val_q_ids, cfg.eval_batch_size, device, query=True)
        vd = embed(model.encoder, val_d_ids, cfg.eval_batch_size, device)
        ranks = exact_search(vq, vd, val_rel, k=100)[1]
        m = rank_metrics(ranks)
        row = {"epoch": epoch, "train_loss": total / max(1, len(batches)), "val_mrr10": m["mrr@10"],
               "val_recall10": m["recall@10"], "temperature": model.temperature,
               "emb_dim_std": float(vd.std(0).mean()), "seconds": time.perf_counter() - t0}
        is_best = m["mrr@10"] > best
        best = max(best, m["mrr@10"])
        run.log(**row)
        print_metrics(**{k: v for k, v in row.items() if k != "seconds"}, sec=row["seconds"])
        ckpt.save(epoch, {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                          "best": best, "config": dataclasses.asdict(cfg), "vocab_size": tok.get_vocab_size()},
                  is_best=is_best)
        result = row
        if remine and epoch < cfg.epochs:
            hard = remined_pool()

    state = ckpt.best()
    model.load_state_dict(state["model"])
    version = encoder_version(model.encoder)
    rows = run.metrics()
    plot_curves(rows, "step", ["loss"], run.file("loss.png"), title="InfoNCE loss (training batches)")
    plot_curves(rows, "epoch", ["val_mrr10", "val_recall10"], run.file("val.png"),
                title=f"validation ({len(val_q)} queries vs {len(val_corpus)} docs)")
    summary = {"best_epoch": int(state["epoch"]), "best_val_mrr10": best, "encoder_version": version,
               "train_pairs": n, "corpus_sha256": ds.info["sha256"], "last": result}
    run.write_json("train.json", summary)
    run.write_report(
        f"# p06_contrastive training\n\nData: debian-packages snapshot `{ds.info['sha256'][:16]}` "
        f"({len(ds.docs)} documents), {n} training pairs, {len(val_q)} validation queries vs "
        f"{len(val_corpus)} documents.\n\nEncoder: "
        + (f"{cfg.layers}-block transformer" if cfg.layers else "bag of token embeddings (no transformer block)")
        + f", dim {cfg.dim}, vocab {tok.get_vocab_size()}, "
        + ("learned weighted" if cfg.pool == "weighted" else "plain")
        + f" mean pooling, L2-normalised; {'symmetric' if cfg.symmetric else 'query->document'} InfoNCE, "
        f"{cfg.hard_negatives} hard negatives, batch {cfg.batch_size}, "
        f"final temperature {model.temperature:.4f}.\n\nBest epoch {state['epoch']}: val MRR@10 {best:.4f}; "
        f"encoder version `{version}`.\n\n![loss](loss.png) ![val](val.png)\n\n"
        f"Test metrics: `run_retrieval_evaluate {run.path}`.\n")
    print(f"run: {run.path}", flush=True)
    return {**summary, "run_dir": str(run.path)}
