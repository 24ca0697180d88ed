"""Console scripts: run_contrastive_train, run_build_index, run_semantic_search, run_retrieval_evaluate,
run_contrastive_ensemble, run_contrastive_export. torch, faiss, tokenizers and this package's modules that
import them are imported inside the mains, so --help stays fast; everything else is imported here."""

from __future__ import annotations

import json
from pathlib import Path

from dlm_core.config import ArgumentParser, add_config_args, add_run_args, config_from_args, run_config
from dlm_core.errors import DlmError, cli_entry
from dlm_core.io import read_json
from dlm_core.runs import RunDir

from .config import BASELINE_FEATURES, PRESETS, SECTION_PRESETS, Config, SectionConfig


@cli_entry
def train_main(argv=None) -> int:
    p = ArgumentParser(prog="run_contrastive_train",
                       description="Train a contrastive text encoder (InfoNCE) on debian-packages synopsis -> "
                                   "description pairs.")
    add_run_args(p, PRESETS, "p06_contrastive")
    add_config_args(p, Config)
    args = p.parse_args(argv)
    if args.resume:
        if RunDir.open(args.resume).file("ensemble.json").exists():
            raise DlmError(f"{args.resume} is an ensemble (run_contrastive_ensemble); resume one of its member runs")
    cfg, run_dir, resume = run_config(Config, args, PRESETS)  # a resumed run keeps its own saved config
    from .train import run_train

    if resume:
        data = run_dir / "data.json"
        preset = read_json(data).get("preset", "default") if data.exists() else "default"
        run_train(cfg, run_dir=run_dir, resume=True, preset=preset)
    else:
        run_train(cfg, run_dir=run_dir, preset=args.preset or "default")
    return 0


@cli_entry
def build_index_main(argv=None) -> int:
    p = ArgumentParser(prog="run_build_index", description="Encode the corpus with a trained run and build a "
                                                           "FAISS index (saved with the documents).")
    p.add_argument("run", help="a run folder of run_contrastive_train")
    p.add_argument("--index", choices=["flat", "hnsw", "ivfpq"], default="hnsw")
    p.add_argument("--ef-search", type=int, default=64, help="HNSW efSearch stored as the default")
    p.add_argument("--nprobe", type=int, default=16, help="IVF-PQ nprobe stored as the default")
    p.add_argument("--out", help="index folder (default: <run>/index-<kind>)")
    args = p.parse_args(argv)
    from .data import load_corpus
    from .evaluate import corpus_embeddings, load_run
    from .index import build_index, index_bytes, save_index, set_search_param

    lr = load_run(args.run)
    ds = load_corpus(lr.cfg.split_seed, lr.cfg.max_corpus)
    emb = corpus_embeddings(lr, ds.docs)
    index, params, seconds = build_index(args.index, emb)
    value = {"hnsw": args.ef_search, "ivfpq": args.nprobe}.get(args.index)
    set_search_param(index, args.index, value)
    out = Path(args.out) if args.out else lr.path / f"index-{args.index}"
    save_index(out, index, {"kind": args.index, "params": {**params, "search": value}, "encoder_version": lr.version,
                            "corpus_sha256": ds.info["sha256"], "run_dir": str(lr.path)}, ds.docs)
    print(f"index: {out} ({args.index}, {index.ntotal} docs x {emb.shape[1]} dims, built in {seconds:.2f}s, "
          f"{index_bytes(index) / 2**20:.1f} MB, encoder {lr.version})", flush=True)
    return 0


@cli_entry
def search_main(argv=None) -> int:
    p = ArgumentParser(prog="run_semantic_search",
                       description="Search the Debian package descriptions by meaning. An empty query or one of "
                                   "only unknown words is an error; -k beyond the corpus returns every document.")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=10, help="results to show")
    p.add_argument("--index", help="index folder (default: the newest runs/p06_contrastive/*/index-*)")
    p.add_argument("--run", help="the run whose encoder embeds the query (default: the one that built the index)")
    args = p.parse_args(argv)
    if not args.query.strip():
        raise DlmError("empty query; type a few words, e.g. run_semantic_search \"solar energy\"")
    if args.k < 1:
        raise DlmError(f"-k {args.k}: ask for at least 1 result")
    from .search import Searcher, latest_index

    searcher = Searcher(args.index or latest_index(), args.run)
    for hit in searcher.search(args.query, args.k):
        syn = hit["synopsis"] if len(hit["synopsis"]) <= 70 else hit["synopsis"][:67] + "..."
        print(f"{hit['rank']:>3}  {hit['score']:.3f}  {hit['id']:<28s} {syn}")
    return 0


@cli_entry
def evaluate_main(argv=None) -> int:
    p = ArgumentParser(prog="run_retrieval_evaluate",
                       description="Recall@k, MRR@10, nDCG@10 of the encoder, TF-IDF, BM25 and the hybrid on the "
                                   "test queries against the full corpus; FAISS table, t-SNE, variance plots.")
    p.add_argument("run", help="a run folder of run_contrastive_train")
    p.add_argument("--split", choices=["val", "test"], default="test")
    p.add_argument("--no-faiss", action="store_true", help="skip the FAISS index table")
    p.add_argument("--tsne-points", type=int, default=2500, help="documents in the t-SNE plot (0 = no plot)")
    args = p.parse_args(argv)
    from .evaluate import run_evaluate

    run_evaluate(args.run, split=args.split, faiss_table=not args.no_faiss, tsne_points=args.tsne_points)
    return 0


@cli_entry
def ensemble_main(argv=None) -> int:
    p = ArgumentParser(prog="run_contrastive_ensemble",
                       description="Join runs of one recipe trained with other seeds into one run whose encoder is "
                                   "their ensemble (concatenated unit vectors / sqrt(K): the mean of their cosines).")
    p.add_argument("runs", nargs="+", help="two or more run folders of run_contrastive_train (same config but --seed)")
    p.add_argument("--out", required=True, help="the new run folder, e.g. runs/p06_contrastive/ensemble")
    args = p.parse_args(argv)
    from .ensemble import run_ensemble

    run_ensemble(args.runs, args.out)
    return 0


@cli_entry
def export_main(argv=None) -> int:
    p = ArgumentParser(prog="run_contrastive_export",
                       description="The query encoder as one ONNX graph (int8 token tables for bag encoders) + "
                                   "tokenizer "
                                   "+ FAISS index + document store as a dlm-bundle/1 in artifacts/<name>/<version>/; "
                                   "--options prints each serving option's nDCG@10 on val instead (to choose one).")
    p.add_argument("run", help="a run or an ensemble (run_contrastive_ensemble) folder")
    p.add_argument("--dims", type=int, default=0,
                   help="project embeddings onto this many top directions (0 = keep all)")
    p.add_argument("--float-tables", action="store_true", help="keep float32 token tables (default: int8 per row)")
    p.add_argument("--index-type", default="SQ4", help="FAISS exhaustive index: Flat (float32), SQ8, SQ4 (bits per "
                   "dimension) or PQ<m> (m bytes per document) (default: SQ4, chosen on val)")
    p.add_argument("--description-chars", type=int, default=0,
                   help="keep this many characters of each description in the document store (default: 0, "
                        "id + section + synopsis only: the bundle stays under 200 MB)")
    p.add_argument("--name", default="package-search", help="bundle name (default: package-search)")
    p.add_argument("--version", help="bundle version (default: the encoder version)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--options", action="store_true", help="score the serving options on the val queries and stop")
    args = p.parse_args(argv)
    if args.dims < 0:
        raise DlmError("--dims must be >= 0")
    from .export import compact_options, run_export

    if args.options:
        compact_options(args.run)
        return 0
    if not (args.index_type in ("Flat", "SQ8", "SQ4") or (args.index_type.startswith("PQ")
                                                          and args.index_type[2:].isdigit())):
        raise DlmError(f"--index-type {args.index_type!r}: use Flat, SQ8, SQ4 or PQ<m>")
    run_export(args.run, args.dims, not args.float_tables, args.index_type, args.version, args.name, args.overwrite,
               description_chars=args.description_chars)
    return 0


@cli_entry
def classifier_main(argv=None) -> int:
    p = ArgumentParser(prog="run_section_classifier",
                       description="Train the Debian section classifier (TF-IDF word and character n-grams and "
                                   "first / last paragraph word n-grams -> wide & deep network, mixed with a "
                                   "one-vs-rest LR; epoch, share and prior shift chosen on val), score it on "
                                   "test beside TF-IDF + "
                                   "logistic regression tuned on val (paired bootstrap interval), and export it as "
                                   "a dlm-bundle/1 (package-section), the model behind POST /predict.")
    p.add_argument("--preset", choices=sorted(SECTION_PRESETS), default="default",
                   help="default: every training package (~22 min on 2 cores with the baseline grid); "
                        "quick: a quarter, no paragraph blocks")
    p.add_argument("--name", default="package-section", help="bundle name (default: package-section)")
    p.add_argument("--version", default=None, help="bundle version (default: the preset's name)")
    p.add_argument("--out", type=Path, default=None, help="also write section_result.json into this folder")
    p.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF + LR grid (minutes on the full data)")
    p.add_argument("--overwrite", action="store_true")
    add_config_args(p, SectionConfig, title="section classifier")
    args = p.parse_args(argv)
    cfg = config_from_args(SectionConfig, args, base=SECTION_PRESETS[args.preset])
    from dlm_core.device import set_cpu_threads

    from .section import train_and_export

    set_cpu_threads()  # DLM_THREADS, else every core

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    train_and_export(cfg, args.version or args.preset, args.name, args.overwrite, not args.no_baseline, args.out)
    return 0


@cli_entry
def section_cv_main(argv=None) -> int:
    p = ArgumentParser(prog="run_section_cv",
                       description="K-fold cross-validation of the section classifier's served recipe against TF-IDF "
                                   "+ logistic regression: every package of train + test scored once by models trained "
                                   "without it (val's choices made again in each fold on the fixed val split), and a "
                                   "paired bootstrap interval over all of them. Finished folds are reused on a rerun.")
    p.add_argument("--out", type=Path, default=Path("runs/p06_contrastive/section-cv"),
                   help="where fold-K.json, predictions.npz and section_cv.json go (default: %(default)s)")
    p.add_argument("--folds", type=int, default=6, help="number of folds (default: 6)")
    p.add_argument("--jobs", type=int, default=2, help="folds trained at once, sharing the cores (default: 2)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the data split and of the folds (default: 0)")
    p.add_argument("--max-pool", type=int, default=0, help="score a seeded subset of this many packages (0 = all)")
    p.add_argument("--baseline-features", choices=BASELINE_FEATURES, default="word+char",
                   help="the baseline's features, as in run_section_classifier's grid (val's choice: %(default)s)")
    p.add_argument("--baseline-c", type=float, default=100.0, help="C of the baseline's LR (val's choice: %(default)s)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    p.add_argument("--preset", choices=sorted(SECTION_PRESETS), default="default", help="the recipe's settings")
    add_config_args(p, SectionConfig, title="section classifier")
    args = p.parse_args(argv)
    if args.folds < 2 or args.jobs < 1 or args.resamples < 1 or args.max_pool < 0:
        raise DlmError("--folds must be >= 2, --jobs and --resamples >= 1, --max-pool >= 0")
    if args.baseline_c <= 0:
        raise DlmError("--baseline-c must be positive")
    cfg = config_from_args(SectionConfig, args, base=SECTION_PRESETS[args.preset])
    from .section_cv import cross_validate

    r = cross_validate(cfg, args.out, args.folds, args.jobs, args.split_seed, args.max_pool, args.baseline_features,
                       args.baseline_c, args.resamples)
    print(json.dumps({"packages": r["packages"], "scores": r["scores"],
                      "model_minus_tfidf": r["bootstrap_model_minus_tfidf"]}, indent=1))
    print(f"wrote {args.out / 'section_cv.json'}")
    return 0


@cli_entry
def retrain_main(argv=None) -> int:
    p = ArgumentParser(prog="run_section_retrain", description="Retrain the serving section classifier from a "
                       "retraining event (dlm-retrain-event/1, written by run_serve): its config, the training split "
                       "+ the labelled feedback (vocabulary refitted, epoch chosen on val), a bundle exported next "
                       "to the serving one, the event's result file written for the server to gate and swap")
    p.add_argument("event", help="the event file (RETRAIN_DIR/events/<id>.json)")
    p.add_argument("--feedback-share", type=float, default=0.25,
                   help="the feedback's share of each epoch, by repetition (default: 0.25)")
    p.add_argument("--epochs", type=int, default=None, help="epochs at most (default: the serving bundle's)")
    p.add_argument("--runs-root", default=None, help="where the new run goes (default: runs/p06_contrastive)")
    args = p.parse_args(argv)
    if not 0 < args.feedback_share < 1 or (args.epochs is not None and args.epochs < 1):
        raise DlmError("need 0 < --feedback-share < 1 and --epochs >= 1")
    from dlm_core.device import set_cpu_threads
    from dlm_core.retrain import read_event, write_result

    from .retrain import retrain

    event = read_event(args.event)
    set_cpu_threads()
    try:
        out = retrain(args.event, args.feedback_share, args.runs_root, args.epochs)
    except Exception as err:  # the server waits for a result file: it must hear about every failure
        write_result(event, error=str(err) if isinstance(err, DlmError) else f"{type(err).__name__}: {err}")
        raise
    write_result(event, **out)
    print(f"bundle: {out['bundle']} (test accuracy {out['test_acc']:.4f}, {out['seconds']} s)", flush=True)
    return 0
