"""Data: the seeded stratified split from dlm_core, optional subsets, the preprocessing that serving reuses,
and the augmentation (random crop, flip, erasing drawn per image, applied to the batch in tensor ops)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dlm_core.data import ArrayDataset, Split, load_dataset
from dlm_core.errors import DlmError

# Fashion-MNIST training-set pixel statistics (after /255). Serving applies exactly this (preprocess.json).
MEAN, STD = 0.2860, 0.3530
SIZE = 28


def preprocess_spec() -> dict:
    return {"kind": "image", "color": "grayscale", "height": SIZE, "width": SIZE, "resize": "bilinear",
            "scale": 1 / 255, "mean": [MEAN], "std": [STD], "layout": "NCHW", "dtype": "float32",
            "note": "white object on black background, like Fashion-MNIST; invert photos of dark objects on white"}


def normalize(x_uint8: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float32, scaled and standardized."""
    return ((x_uint8.astype(np.float32) / 255.0 - MEAN) / STD)[:, None]


def _subset(split: Split, n: int, seed: int, stream: int) -> Split:
    if not n or n >= len(split):
        return split
    idx = np.sort(np.random.default_rng([seed, stream]).permutation(len(split))[:n])
    return Split(split.x[idx], split.y[idx])


def load_data(name: str, seed: int = 0, train_subset: int = 0, eval_subset: int = 0) -> ArrayDataset:
    ds = load_dataset(name, seed=seed)
    if ds.train.x.ndim != 3 or ds.train.x.shape[1:] != (SIZE, SIZE):
        raise DlmError(f"dataset {name} has images of shape {ds.train.x.shape[1:]}; this trainer needs 28x28")
    ds.train = _subset(ds.train, train_subset, seed, 1)
    ds.val = _subset(ds.val, eval_subset, seed, 2)
    ds.test = _subset(ds.test, eval_subset, seed, 3)
    return ds


def load_extra(path, num_classes: int) -> Split:
    """Extra labelled images (`--extra-data`, e.g. the feedback a server collected): an .npz with x (N, 28, 28)
    pixel values 0..255 and y (N,) class indices. Checked here so a bad file fails before training starts."""
    path = Path(path)
    if not path.is_file():
        raise DlmError(f"--extra-data {path} does not exist; pass an .npz with arrays x and y")
    with np.load(path) as f:
        if "x" not in f or "y" not in f:
            raise DlmError(f"--extra-data {path} needs arrays 'x' and 'y', has {sorted(f.files)}")
        x, y = np.asarray(f["x"]), np.asarray(f["y"])
    if x.ndim != 3 or x.shape[1:] != (SIZE, SIZE) or len(x) != len(y) or not len(x):
        raise DlmError(f"--extra-data {path}: x has shape {list(x.shape)} and y {list(y.shape)}; "
                       f"need x (N, {SIZE}, {SIZE}) and y (N,), N >= 1")
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 255:
        raise DlmError(f"--extra-data {path}: pixel values must lie in 0..255")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise DlmError(f"--extra-data {path}: labels must be class indices 0..{num_classes - 1}")
    return Split(np.rint(x).astype(np.uint8), y.astype(np.int64))


def build_augment(padding: int = 2, erasing_p: float = 0.25) -> BatchAugment:
    return BatchAugment(padding, erasing_p)


class BatchAugment:
    """Random crop with padding, horizontal flip and random erasing, drawn per image but applied to a whole
    normalized (N, 1, 28, 28) batch at once: the distribution of torchvision's v2.RandomCrop(28, padding),
    v2.RandomHorizontalFlip() and v2.RandomErasing(p, scale=(0.02, 0.15), ratio=(0.3, 3.3)), in tensor ops
    instead of a Python loop over images (12 ms -> ~1 ms per batch of 128 here: 9% of a bf16 training step).
    Padding and erased patches get the value of a black pixel, like the background. Draws from torch's global
    generator (the trainer seeds it per epoch)."""

    scale, log_ratio, tries = (0.02, 0.15), (math.log(0.3), math.log(3.3)), 10

    def __init__(self, padding: int = 2, erasing_p: float = 0.25):
        self.padding, self.erasing_p, self.fill = padding, erasing_p, -MEAN / STD

    def __call__(self, xb):
        return self.erase(self.flip(self.crop(xb)))

    def crop(self, xb):
        import torch  # inside: the ONNX predict path (load_image) runs without torch

        n, _, h, w = xb.shape
        p = self.padding
        padded = torch.nn.functional.pad(xb[:, 0], (p, p, p, p), value=self.fill)
        top, left = torch.randint(0, 2 * p + 1, (n, 1)), torch.randint(0, 2 * p + 1, (n, 1))
        rows, cols = top + torch.arange(h), left + torch.arange(w)
        return padded[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]].unsqueeze(1)

    @staticmethod
    def flip(xb):
        import torch

        return torch.where(torch.rand(len(xb))[:, None, None, None] < 0.5, xb.flip(-1), xb)

    def erase(self, xb):
        """v2.RandomErasing's draw: up to `tries` (area, aspect) pairs, the first whose box fits is erased."""
        import torch

        n, _, h, w = xb.shape
        area = h * w * torch.empty(n, self.tries).uniform_(*self.scale)
        aspect = torch.exp(torch.empty(n, self.tries).uniform_(*self.log_ratio))
        eh, ew = torch.round(torch.sqrt(area * aspect)).long(), torch.round(torch.sqrt(area / aspect)).long()
        fits = (eh < h) & (ew < w)
        first = fits.float().argmax(1, keepdim=True)  # the first try that fits (0 when none does)
        eh, ew = eh.gather(1, first), ew.gather(1, first)
        top = (torch.rand(n, 1) * (h - eh + 1)).long()
        left = (torch.rand(n, 1) * (w - ew + 1)).long()
        on = (torch.rand(n, 1) < self.erasing_p) & fits.any(1, keepdim=True)
        r, c = torch.arange(h), torch.arange(w)
        rows = (r >= top) & (r < top + eh) & on  # (n, h)
        cols = (c >= left) & (c < left + ew)  # (n, w)
        box = (rows[:, :, None] & cols[:, None, :]).unsqueeze(1)
        return torch.where(box, torch.as_tensor(self.fill, dtype=xb.dtype), xb)


def load_image(path, invert: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """A PNG/JPEG/... file -> ((1, 28, 28) uint8, original (width, height)), per preprocess_spec():
    grayscale, bilinear resize to 28x28 (any size is accepted), optional inversion for dark-on-white photos."""
    path = Path(path)
    if not path.is_file():
        raise DlmError(f"image {path} does not exist; pass the path of a PNG or JPEG file")
    try:
        with Image.open(path) as img:
            size = img.size
            grey = img.convert("L").resize((SIZE, SIZE), Image.BILINEAR)
    except (UnidentifiedImageError, OSError) as err:
        raise DlmError(f"{path} is not a readable image ({type(err).__name__}); pass a PNG or JPEG file") from None
    arr = np.asarray(grey, dtype=np.uint8)
    if invert:
        arr = 255 - arr
    return arr[None], size
