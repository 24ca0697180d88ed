"""Join runs of one recipe (other seeds) into one run whose encoder is their ensemble.

Each member is a full run_contrastive_train run. The joined run has the members' config and tokenizer and one
checkpoint holding every member's weights; load_run builds an EncoderEnsemble from it, so evaluation,
indexing, search and export treat it like any other run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from dlm_core.checkpoint import Checkpointer, save_checkpoint
from dlm_core.errors import DlmError
from dlm_core.io import write_bytes
from dlm_core.runs import RunDir

from .config import Config
from .evaluate import load_run

IGNORED_KEYS = ("seed", "threads", "device", "eval_batch_size")  # may differ between members


def run_ensemble(run_paths: list, out) -> dict:
    if len(run_paths) < 2:
        raise DlmError("an ensemble needs two or more runs; train more seeds with run_contrastive_train --seed S")
    out = Path(out)
    if out.exists():
        raise DlmError(f"{out} exists; pass a new --out folder")
    runs = [RunDir.open(p) for p in run_paths]
    # through Config: a run saved before a flag existed gets that flag's default
    configs = [dataclasses.asdict(Config(**r.load_config())) for r in runs]
    for r, cfg in zip(runs[1:], configs[1:]):
        for key in sorted(set(cfg) | set(configs[0])):
            if key not in IGNORED_KEYS and cfg.get(key) != configs[0].get(key):
                raise DlmError(f"{r.path} differs from {runs[0].path} in {key} ({cfg.get(key)!r} vs "
                               f"{configs[0].get(key)!r}); members must share the recipe and differ in --seed only")
    tokenizers = [r.file("tokenizer.json").read_bytes() for r in runs]
    if any(t != tokenizers[0] for t in tokenizers[1:]):
        raise DlmError("the members' tokenizers differ; they must be trained on the same split and vocabulary")
    for r in runs:
        if r.file("ensemble.json").exists():
            raise DlmError(f"{r.path} is already an ensemble; join its member runs instead")

    states = [Checkpointer(r.checkpoint_dir).best() for r in runs]
    model = {}
    for i, state in enumerate(states):
        for key, value in state["model"].items():
            if key.startswith("encoder."):
                model[f"encoder.members.{i}.{key[len('encoder.'):]}"] = value
    merged = {"model": model, "members": len(runs), "vocab_size": states[0]["vocab_size"],
              "epoch": max(int(s["epoch"]) for s in states), "member_epochs": [int(s["epoch"]) for s in states],
              "config": configs[0]}

    # built beside --out and renamed into place at the end: a failure leaves no half-written run
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        run = RunDir.at(tmp, configs[0])
        write_bytes(run.file("tokenizer.json"), tokenizers[0])
        if runs[0].file("data.json").exists():
            write_bytes(run.file("data.json"), runs[0].file("data.json").read_bytes())
        save_checkpoint(run.checkpoint_dir / "best.pt", merged)
        loaded = load_run(tmp)
        info = {"members": [str(r.path) for r in runs], "seeds": [c["seed"] for c in configs],
                "member_epochs": merged["member_epochs"], "encoder_version": loaded.version,
                "dim": loaded.encoder.out_dim}
        run.write_json("ensemble.json", info)
        run.write_report(
            f"# p06_contrastive ensemble\n\n{len(runs)} runs of one recipe (seeds {info['seeds']}), joined: "
            f"the concatenation of their unit vectors / sqrt({len(runs)}), {info['dim']} dimensions; q . d is the "
            f"mean of the members' cosines.\n\nMembers: " + ", ".join(f"`{r.path}`" for r in runs)
            + f"\n\nEncoder version `{loaded.version}`. Metrics: `run_retrieval_evaluate {out}`.\n")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ensemble of {len(runs)} runs: {out} (encoder {loaded.version}, {info['dim']} dims)", flush=True)
    return {**info, "run_dir": str(out)}
