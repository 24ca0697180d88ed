"""A trained run, loaded for evaluation, translation and export: the model is built from the run's own saved
config (like nanoGPT's model_args), never from flags, and gets the best checkpoint's weights."""

from __future__ import annotations

from dlm_core.checkpoint import Checkpointer
from dlm_core.runs import RunDir

from . import data as D
from .config import TransformerConfig
from .model import build_model


def load_run(run_path):
    """(model in eval mode, tokenizer, config, run) from a run folder's best checkpoint."""
    run = RunDir.open(run_path)
    cfg = TransformerConfig(**run.load_config())
    tok = D.load_tokenizer(run.file("tokenizer.json"))
    state = Checkpointer(run.checkpoint_dir).best()
    model = build_model(cfg, tok.get_vocab_size())
    model.load_state_dict(state["model"])
    model.eval()
    return model, tok, cfg, run
