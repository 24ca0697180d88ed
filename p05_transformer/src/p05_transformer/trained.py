"""A trained run, loaded for evaluation, translation and export: the model is built from the run's own saved
config (like nanoGPT's model_args), never from flags, and gets the best checkpoint's weights, or with
`average_last` K > 1 the mean of the last K epochs' weights (checkpoint averaging)."""

from __future__ import annotations

from dlm_core.checkpoint import Checkpointer, load_checkpoint, save_checkpoint
from dlm_core.errors import DlmError
from dlm_core.runs import RunDir

from . import data as D
from .config import TransformerConfig
from .model import build_model

AVERAGED = "averaged.pt"


def average_last_epochs(ckpt: Checkpointer, k: int) -> dict:
    """The element-wise mean of the model weights of the last k epoch checkpoints (all kept: `keep` >= k)."""
    epochs = ckpt.epochs()[-k:]
    if len(epochs) < k:
        raise DlmError(f"averaging the last {k} epochs needs {k} epoch checkpoints; {ckpt.dir} keeps {len(epochs)} "
                       f"({epochs}): train with --average-last {k} (which keeps them) or average fewer")
    states = [load_checkpoint(ckpt.dir / f"epoch-{e}.pt")["model"] for e in epochs]
    mean = {name: sum(s[name].double() for s in states).div(k).to(w.dtype) if w.is_floating_point() else w
            for name, w in states[-1].items()}
    return {"model": mean, "averaged_epochs": epochs}


def save_average(ckpt: Checkpointer, k: int):
    """checkpoints/averaged.pt: the mean of the last k epochs' weights (what load_run serves when k > 1)."""
    return save_checkpoint(ckpt.dir / AVERAGED, average_last_epochs(ckpt, k))


def load_run(run_path, average_last: int | None = None):
    """(model in eval mode, tokenizer, config, run) from a run folder: the best checkpoint, or with the run's
    average_last > 1 its averaged.pt; `average_last` given averages the last K kept epochs now (to choose K on
    val; 1 = the best checkpoint)."""
    run = RunDir.open(run_path)
    cfg = TransformerConfig(**{"average_last": 1, **run.load_config()})  # runs from before averaging: best epoch
    tok = D.load_tokenizer(run.file("tokenizer.json"))
    ckpt = Checkpointer(run.checkpoint_dir)
    # the run's own final model: averaged.pt, or for a run still training the mean of what it has kept so far
    k = min(cfg.average_last, len(ckpt.epochs())) if average_last is None else average_last
    if k > 1 and average_last is None and (ckpt.dir / AVERAGED).is_file():
        state = load_checkpoint(ckpt.dir / AVERAGED)
    elif k > 1:
        state = average_last_epochs(ckpt, k)
    else:
        state = ckpt.best()
    model = build_model(cfg, tok.get_vocab_size())
    model.load_state_dict(state["model"])
    model.eval()
    return model, tok, cfg, run
