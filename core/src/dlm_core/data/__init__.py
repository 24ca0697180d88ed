"""Named real datasets, loaded offline from the cache ($DLM_DATA or ~/.cache/dlm).

Built-in sources live in sources.py; a project adds its own as a module named `src_<name>.py` in this
folder (it calls register(Source(...)) at import) and it is picked up here automatically.
"""

import importlib
import pkgutil

from . import sources  # noqa: F401  (registers the built-in datasets)
from .registry import Source, data_root, fetch, get_source, list_sources, load_dataset, register, require
from .sources import FASHION_CLASSES, read_idx, torchvision_fashion_mnist
from .types import ArrayDataset, SeriesDataset, Split, TextDataset, stratified_split

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name.startswith("src_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["ArrayDataset", "FASHION_CLASSES", "SeriesDataset", "Source", "Split", "TextDataset", "data_root",
           "fetch", "get_source", "list_sources", "load_dataset", "read_idx", "register", "require",
           "stratified_split", "torchvision_fashion_mnist"]
