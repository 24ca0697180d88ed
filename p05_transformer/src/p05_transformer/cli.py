"""Console scripts: run_transformer_train, run_transformer_translate, run_transformer_evaluate,
run_transformer_export. torch (with the modules that import it or tokenizers, sacrebleu, onnx: train, evaluate,
export, data, baselines) is imported inside each main, so --help is instant; the light imports are here."""

from __future__ import annotations

import dataclasses
import sys

from dlm_core.config import ArgumentParser, add_config_args, add_run_args, run_config
from dlm_core.device import select_device
from dlm_core.errors import DlmError, cli_entry
from dlm_core.predictors import BadInput, load_predictor
from dlm_core.runs import print_metrics

from .config import PRESETS, TransformerConfig


def add_decoding_args(p: ArgumentParser) -> None:
    p.add_argument("--length-alpha", type=float, default=None,
                   help="beam length-normalisation exponent (default: the run's); choose it with --split val")
    p.add_argument("--no-repeat-ngram", type=int, default=None, metavar="N",
                   help="beam search never repeats a subword N-gram (0 = off; default: the run's)")


def with_decoding_args(cfg: TransformerConfig, args) -> TransformerConfig:
    """The run's config with the decoding flags given on the command line (re-validated)."""
    given = {k: v for k, v in (("length_alpha", args.length_alpha), ("no_repeat_ngram", args.no_repeat_ngram))
             if v is not None}
    return dataclasses.replace(cfg, **given)


@cli_entry
def train_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_transformer_train",
                       description="Train the EN->ES transformer on bible-en-es; score test beside the baselines")
    add_run_args(p, PRESETS, "p05_transformer", "quick: the 2-minute demo")
    add_config_args(p, TransformerConfig)
    args = p.parse_args(argv)
    from .train import train

    cfg, run_dir, resume = run_config(TransformerConfig, args, PRESETS)
    train(cfg, run_dir=run_dir, resume=resume)
    return 0


@cli_entry
def translate_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_transformer_translate", description="Translate English sentences to Spanish")
    p.add_argument("text", nargs="+", help="English sentence(s); each argument is translated separately")
    p.add_argument("--run", default=None, help="trained run folder (default: the latest under runs/p05_transformer)")
    p.add_argument("--bundle", default=None, help="translate with an exported bundle instead (ONNX Runtime, no torch: "
                   "dlm_core.predictors.Translator, with the bundle's own decoding settings)")
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    add_decoding_args(p)
    p.add_argument("--attention", default=None, metavar="OUT.png", help="save cross-attention heatmaps (1st text)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    args = p.parse_args(argv)
    if args.beam < 1:
        raise DlmError("--beam must be >= 1")
    if args.bundle:
        if args.run or args.attention:
            raise DlmError("--bundle translates with the bundle alone; drop --run/--attention")
        pred = load_predictor(args.bundle)
        pred.self_check()
        try:
            rows = [pred.prepare(t) for t in args.text]
        except BadInput as err:
            raise DlmError(f"{err}") from None
        for text, out in zip(args.text, pred.run(rows).results):
            print(f'input: "{text}"  output: "{out["translation"]}"')
        return 0

    from .evaluate import attention_figure, latest_run, load_run, translate_texts

    select_device(args.device)
    model, tok, cfg, _ = load_run(args.run or latest_run())
    cfg = with_decoding_args(cfg, args)
    outs = translate_texts(model, tok, cfg, args.text, beam=args.beam)
    for text, out in zip(args.text, outs):
        print(f'input: "{text}"  output: "{out}"')
    if args.attention:
        print(f"attention: {attention_figure(model, tok, args.text[0], args.attention, cfg.max_len)}")
    return 0


@cli_entry
def export_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_transformer_export", description="Export a trained run as a dlm-bundle/1 "
                       "(artifacts/<name>/<version>/: encoder + decoder-step ONNX graphs, tokenizer, the run's "
                       "decoding "
                       "settings); refused unless ONNX Runtime decodes exactly as torch")
    p.add_argument("run", help="trained run folder, e.g. runs/p05_transformer/<run>/")
    p.add_argument("--name", default="translator-en-es", help="bundle name (default: translator-en-es)")
    p.add_argument("--version", default=None, help="bundle version (default: the run folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle of that version")
    args = p.parse_args(argv)
    from .export import export_bundle

    print(f"bundle: {export_bundle(args.run, args.version, args.overwrite, args.name)}")
    return 0


@cli_entry
def evaluate_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_transformer_evaluate",
                       description="sacreBLEU + chrF of a trained run on the test split, beside the baselines")
    p.add_argument("run", help="run folder, e.g. runs/p05_transformer/<run>/")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the run's)")
    add_decoding_args(p)
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="val: score the validation pairs instead, to choose decoding settings without test")
    p.add_argument("--limit", type=int, default=0, help="score only the first N pairs (0 = all)")
    p.add_argument("--average-last", type=int, default=None, metavar="K",
                   help="score the mean of the last K kept epochs' weights (1 = the best epoch; default: the run's "
                        "own final model); choose K with --split val")
    p.add_argument("--gru-minutes", type=float, default=0.0,
                   help="also train the GRU+additive-attention baseline for this many CPU minutes (process time; "
                        "compare with the run's train_cpu_minutes under DLM_THREADS=1) and score it")
    p.add_argument("--model-only", action="store_true",
                   help="score only the model at this decoding (no greedy rerun, no baselines): the quick way to "
                        "compare settings on val")
    args = p.parse_args(argv)
    from . import data as D
    from .evaluate import evaluate_model, load_run

    select_device("cpu")  # honours DLM_THREADS (the GRU's CPU-minute budget counts every thread)
    if args.average_last is not None and args.average_last < 1:
        raise DlmError("--average-last must be >= 1")
    model, tok, cfg, run = load_run(args.run, args.average_last)
    cfg = with_decoding_args(cfg, args)
    train_pairs, val, test = D.load_pairs(cfg)
    test = val if args.split == "val" else test
    test = test[:args.limit] if args.limit else test
    beam = args.beam or cfg.beam
    res = evaluate_model(model, tok, cfg, train_pairs, test, beam, args.model_only)
    res["config"], res["split"] = dataclasses.asdict(cfg), args.split
    nrep = f"_norepeat{cfg.no_repeat_ngram}" if cfg.no_repeat_ngram else ""
    avg = f"_avg{args.average_last}" if args.average_last is not None else ""
    res["average_last"] = cfg.average_last if args.average_last is None else args.average_last
    run.write_json(f"evaluate_{args.split}_beam{beam}_alpha{cfg.length_alpha:g}{nrep}{avg}.json", res)
    print(f"{args.split} pairs: {len(test)}  beam: {beam}  length alpha: {cfg.length_alpha:g}  "
          f"no-repeat n-gram: {cfg.no_repeat_ngram or 'off'}  weights: "
          + (f"mean of the last {res['average_last']} epochs" if res["average_last"] > 1 else "best epoch"))
    print_metrics(bleu=res["test_bleu"], chrf=res["test_chrf"])
    if (b := res.get("baselines")) is not None:
        print_metrics(ibm_model1_bleu=b["ibm_model1"]["bleu"], ibm_model1_chrf=b["ibm_model1"]["chrf"])
        print_metrics(copy_source_bleu=b["copy_source"]["bleu"], copy_source_chrf=b["copy_source"]["chrf"])
    if args.gru_minutes > 0:
        import torch

        from .baselines import train_gru
        from .evaluate import score

        gru, epochs, minutes = train_gru(tok, train_pairs, cfg, args.gru_minutes, cfg.seed)
        srcs = [D.encode(tok, en)[:cfg.max_len] for en, _ in test]
        hyps = []
        for i in range(0, len(srcs), 64):
            hyps += [D.decode(tok, h) for h in gru.greedy(torch.from_numpy(D.pad(srcs[i:i + 64])), cfg.max_len + 1)]
        bleu, chrf = score(hyps, [es for _, es in test])
        gres = {"gru_bleu": bleu, "gru_chrf": chrf, "epochs": epochs, "train_cpu_minutes": minutes,
                "decoding": "greedy", "parameters": sum(p.numel() for p in gru.parameters()), "test_size": len(test)}
        run.write_json("gru_baseline.json", gres)
        print_metrics(gru_bleu=bleu, gru_chrf=chrf, gru_epochs=epochs, gru_parameters=gres["parameters"])
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
