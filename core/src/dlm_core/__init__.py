"""dlm_core: the small shared core of the dlm stack.

seeding, devices, run directories, metrics logging and progress, checkpoints, datasets, model bundles,
distributed helpers and errors. Modules that need torch import it lazily, so numpy-only projects
(p01_autodiff) can use the rest without torch installed.
"""

from .errors import DlmError, NonFiniteLossError, check_finite, cli_entry
from .io import atomic_path, read_json, write_json, write_text
from .runs import RunDir, format_metrics, print_metrics, progress
from .seed import data_rng, seed_everything

__version__ = "0.1.0"

__all__ = ["DlmError", "NonFiniteLossError", "RunDir", "atomic_path", "check_finite", "cli_entry", "data_rng",
           "format_metrics", "print_metrics", "progress", "read_json", "seed_everything", "write_json",
           "write_text"]
