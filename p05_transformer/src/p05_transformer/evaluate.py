"""Held-out scoring (sacreBLEU + chrF) beside the baselines, cross-attention heatmaps, curves and report.md."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import sacrebleu
import torch

from dlm_core.errors import DlmError
from dlm_core.plotting import plot_curves, plt, save_figure
from dlm_core.runs import RunDir, print_metrics, runs_root

from . import data as D
from .baselines import IBMModel1, copy_source
from .config import PROJECT, TransformerConfig
from .decode import greedy, translate_ids
from .export import export_bundle
from .model import BOS, EOS, Transformer
from .trained import load_run  # noqa: F401 - the cli's, tests' and bench's name; in trained.py as export needs it


def score(hyps: list[str], refs: list[str]) -> tuple[float, float]:
    return sacrebleu.corpus_bleu(hyps, [refs]).score, sacrebleu.corpus_chrf(hyps, [refs]).score


def latest_run() -> Path:
    runs = sorted(p.parent for p in (runs_root() / PROJECT).glob("*/tokenizer.json")
                  if (p.parent / "checkpoints").is_dir() and any((p.parent / "checkpoints").glob("*.pt")))
    if not runs:
        raise DlmError(f"no trained run under {runs_root() / PROJECT}; train one with run_transformer_train "
                       "(or pass --run DIR)")
    return runs[-1]


def prepare_input(tok, text: str, max_len: int) -> list[int]:
    """Source text -> ids, refusing what the model cannot read (one clear error, no truncation)."""
    if not text.strip():
        raise DlmError("empty input; pass an English sentence, e.g. \"God is love.\"")
    ids = D.encode(tok, text)
    if len(ids) > max_len:
        raise DlmError(f"input is {len(ids)} subword tokens; this model reads at most {max_len}: split it into "
                       "shorter sentences")
    return ids


def translate_texts(model, tok, cfg, texts: list[str], beam: int = 1, truncate: bool = False) -> list[str]:
    """truncate=True (corpus scoring) cuts over-long inputs to max_len tokens instead of refusing them."""
    ids = [D.encode(tok, t)[:cfg.max_len] if truncate else prepare_input(tok, t, cfg.max_len) for t in texts]
    return [D.decode(tok, h) for h in translate_ids(model, ids, cfg.max_len + 1, beam=beam, alpha=cfg.length_alpha,
                                                           no_repeat_ngram=cfg.no_repeat_ngram)]


def attention_figure(model: Transformer, tok, text: str, path: str | Path, max_len: int = 64) -> Path:
    """Cross-attention of every decoder layer and head: source tokens (x) vs generated tokens (y)."""
    ids = prepare_input(tok, text, max_len)
    src = torch.tensor([ids])
    out = greedy(model, src, max_len + 1)[0]
    full = torch.tensor([[BOS] + out + [EOS]])
    model.set_keep_weights(True)
    with torch.no_grad():
        model.decode(full[:, :-1], model.encode(src), src)  # teacher-force the greedy output to read weights
    model.set_keep_weights(False)
    src_tok = [tok.id_to_token(i).replace("▁", "_") for i in ids]
    out_tok = [tok.id_to_token(i).replace("▁", "_") for i in out] + ["</s>"]
    layers = [layer.cross_attn.last_weights[0] for layer in model.decoder]  # each (h, T, S)
    heads = layers[0].size(0)
    pyplot = plt()
    cell = 0.22
    fig, axes = pyplot.subplots(len(layers), heads, squeeze=False,
                                figsize=(max(6, heads * (1 + cell * len(src_tok))),
                                         max(3, len(layers) * (1 + cell * len(out_tok)))))
    for li, w in enumerate(layers):
        for hi in range(heads):
            ax = axes[li][hi]
            ax.imshow(w[hi].numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(src_tok)), src_tok, rotation=90, fontsize=6)
            ax.set_yticks(range(len(out_tok)), out_tok, fontsize=6)
            ax.set_title(f"layer {li + 1} head {hi + 1}", fontsize=8)
    fig.suptitle(f"cross-attention: {text!r} -> {D.decode(tok, out)!r}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def baselines(train_pairs, test_pairs) -> dict:
    refs = [es for _, es in test_pairs]
    t0 = time.perf_counter()
    ibm = IBMModel1().fit(train_pairs)
    ibm_hyps = [ibm.translate(en) for en, _ in test_pairs]
    out = {}
    for name, hyps in (("copy_source", copy_source([en for en, _ in test_pairs])), ("ibm_model1", ibm_hyps)):
        out[name] = dict(zip(("bleu", "chrf"), score(hyps, refs)))
    out["ibm_model1"]["fit_seconds"] = time.perf_counter() - t0
    return out


def evaluate_model(model, tok, cfg, train_pairs, test_pairs, beam: int, model_only: bool = False) -> dict:
    """The model's BLEU / chrF at this beam, and (unless model_only) greedy beside it and the baselines."""
    t0 = time.perf_counter()
    hyps = translate_texts(model, tok, cfg, [en for en, _ in test_pairs], beam=beam, truncate=True)
    bleu, chrf = score(hyps, [es for _, es in test_pairs])
    res = {"test_bleu": bleu, "test_chrf": chrf, "beam": beam, "decode_seconds": time.perf_counter() - t0,
           "test_size": len(test_pairs)}
    if not model_only:
        res["baselines"] = baselines(train_pairs, test_pairs)
    if beam > 1 and not model_only:
        res["test_bleu_greedy"], res["test_chrf_greedy"] = score(
            translate_texts(model, tok, cfg, [en for en, _ in test_pairs], beam=1, truncate=True),
            [es for _, es in test_pairs])
    res["examples"] = [{"en": en, "ref": es, "out": h} for (en, es), h in zip(test_pairs, hyps)]
    return res


def examples_table(examples: list[dict], n: int = 4) -> str:
    """The n best and n worst test sentences by sentence chrF."""
    ranked = sorted(examples, key=lambda e: sacrebleu.sentence_chrf(e["out"], [e["ref"]]).score)
    rows = ["| | English | reference | transformer |", "|---|---|---|---|"]
    for tag, group in (("good", ranked[-n:][::-1]), ("bad", ranked[:n])):
        rows += [f"| {tag} | {e['en']} | {e['ref']} | {e['out']} |" for e in group]
    return "\n".join(rows)


def finish_run(run: RunDir, cfg: TransformerConfig, tok, train_pairs, test_pairs, elapsed: float) -> dict:
    """After training: the best checkpoint on the test split (once), baselines, plots, report, bundle."""
    model, tok, _, _ = load_run(run.path)
    test = test_pairs[:cfg.test_sentences] if cfg.test_sentences else test_pairs
    res = evaluate_model(model, tok, cfg, train_pairs, test, cfg.beam)
    res["train_minutes"] = elapsed / 60
    res["train_cpu_minutes"] = sum(r.get("cpu_seconds", 0.0) for r in run.metrics()) / 60  # 1 thread: core-minutes
    res["epochs_run"] = len(run.metrics())
    res["complete"] = res["epochs_run"] >= cfg.epochs  # False only when the --max-minutes safety net cut it short
    res["config"] = dataclasses.asdict(cfg)
    run.write_json("results.json", res)
    rows = run.metrics()
    plot_curves(rows, "epoch", ["train_loss", "val_loss"], run.file("loss.png"), title="label-smoothed loss")
    plot_curves(rows, "epoch", ["val_bleu", "val_chrf"], run.file("val_bleu.png"), title="validation (greedy)")
    samples = [en for en, _ in test if len(D.encode(tok, en)) <= cfg.max_len][:cfg.attention_samples]
    for i, s in enumerate(samples):
        attention_figure(model, tok, s, run.file(f"attention_{i}.png"), cfg.max_len)
    b = res["baselines"]
    print_metrics(test_bleu=res["test_bleu"], test_chrf=res["test_chrf"], copy_bleu=b["copy_source"]["bleu"],
                  ibm1_bleu=b["ibm_model1"]["bleu"], ibm1_chrf=b["ibm_model1"]["chrf"])
    run.write_report(
        f"# p05 transformer EN->ES\n\n{len(train_pairs)} training pairs, {len(test)} test pairs; "
        f"{res['epochs_run']} epochs in {elapsed / 60:.1f} min.\n\n"
        + ("" if res["complete"] else f"**Incomplete run**: the --max-minutes safety net stopped it after "
           f"{res['epochs_run']} of {cfg.epochs} epochs; these scores are not the config's result.\n\n")
        + f"| model | test BLEU | test chrF |\n|---|---|---|\n"
        f"| transformer (beam {cfg.beam}) | {res['test_bleu']:.2f} | {res['test_chrf']:.2f} |\n"
        + (f"| transformer (greedy) | {res['test_bleu_greedy']:.2f} | {res['test_chrf_greedy']:.2f} |\n"
           if cfg.beam > 1 else "")
        + f"| IBM Model 1 word-by-word | {b['ibm_model1']['bleu']:.2f} | {b['ibm_model1']['chrf']:.2f} |\n"
        f"| copy the source | {b['copy_source']['bleu']:.2f} | {b['copy_source']['chrf']:.2f} |\n\n"
        f"![loss](loss.png) ![bleu](val_bleu.png)\n\n![attention](attention_0.png)\n\n"
        f"## Examples (best and worst by sentence chrF)\n\n{examples_table(res['examples'])}\n")
    if cfg.export:
        bundle = export_bundle(run.path)
        res["bundle"] = str(bundle)
        run.write_json("results.json", res)
        print(f"bundle: {bundle}", flush=True)
    return res
