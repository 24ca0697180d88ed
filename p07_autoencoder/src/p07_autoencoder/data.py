"""Normal-only splits for the three anomaly tasks, and the preprocessing that is saved with the model.

Protocols (labels are read only to build the normal-only train/val splits and for the final test metrics):
- fashion-oneclass: train/val = the normal class's images from the core's train/val splits; test = the whole
  official test set, the normal class as 0 and the nine other classes as anomalies (1).
- shuttle: train/val = the normal rows of the core's stratified train/val splits; test = the test split.
- ucr-kdd135: the first `train_end` points are normal; sliding windows of the prefix's last `val_points`
  points are validation, the windows before them are training; every point after the prefix is test and
  gets the mean squared error of the test windows that cover it.

Preprocessing is a plain dict (JSON in the run dir and the bundle): images are scaled to [0, 1]; tables are
standardised per feature and the series with one mean/std, both fitted on the training rows only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dlm_core.data import load_dataset
from dlm_core.errors import DlmError
from dlm_core.seed import data_rng

from .config import AEConfig

IMAGE_SHAPE = (1, 28, 28)


@dataclasses.dataclass
class Prepared:
    kind: str                 # "image" | "tabular" | "series"
    x_train: np.ndarray       # model inputs, float32: (N, 1, 28, 28) | (N, D) | (N, 1, window)
    x_val: np.ndarray         # held-out NORMAL inputs (threshold and model selection)
    x_test: np.ndarray
    y_test: np.ndarray        # 0 normal / 1 anomaly per test unit (image, row, or series point)
    preprocess: dict          # everything needed to turn raw input into model input
    test_ids: np.ndarray      # original indices of the test units (image/row index, or series position)
    test_classes: np.ndarray | None = None   # fashion: the original class of each test image
    series: np.ndarray | None = None         # ucr: the raw series and its labels, for plots
    series_labels: np.ndarray | None = None


# --- preprocessing shared with run_anomaly_detector and serving -------------------------------------------
def preprocess(raw: np.ndarray, spec: dict) -> np.ndarray:
    """Raw input (pixels 0..255, table rows, or a raw series) -> model input; DlmError on a wrong shape."""
    raw = np.asarray(raw)
    kind = spec["kind"]
    if kind == "image":
        if raw.ndim == 2 and raw.shape[1] == 784:
            raw = raw.reshape(-1, 28, 28)
        if raw.ndim == 4 and raw.shape[1] == 1:
            raw = raw[:, 0]
        if raw.ndim == 2 and raw.shape == (28, 28):
            raw = raw[None]
        if raw.ndim != 3 or raw.shape[1:] != (28, 28):
            raise DlmError(f"expected 28x28 grey images shaped (N, 28, 28), (N, 784) or (N, 1, 28, 28); "
                           f"got shape {raw.shape}")
        return (raw.astype(np.float32) * np.float32(spec["scale"]))[:, None]
    if kind == "tabular":
        d = len(spec["mean"])
        if raw.ndim == 1 and raw.shape[0] == d:
            raw = raw[None]
        if raw.ndim != 2 or raw.shape[1] != d:
            raise DlmError(f"expected rows of {d} features ({', '.join(spec['features'])}); got shape {raw.shape}")
        return ((raw.astype(np.float32) - np.float32(spec["mean"])) / np.float32(spec["std"])).astype(np.float32)
    if kind == "series":
        w = spec["window"]
        raw = raw.astype(np.float32)
        if raw.ndim == 2 and raw.shape[1] == 1:
            raw = raw[:, 0]
        if raw.ndim != 1 or len(raw) < w:
            raise DlmError(f"expected one univariate series of at least {w} points (a 1-D array or a one-column "
                           f"CSV); got shape {raw.shape}")
        return ((raw - spec["mean"]) / spec["std"]).astype(np.float32)
    raise DlmError(f"unknown preprocessing kind {kind!r} in preprocess.json")


def windows(z: np.ndarray, w: int) -> np.ndarray:
    """All length-w windows (stride 1) of a 1-D series, shaped (n, 1, w) for the 1D-conv AE."""
    if len(z) < w:
        return np.zeros((0, 1, w), np.float32)
    return np.lib.stride_tricks.sliding_window_view(z, w)[:, None, :].astype(np.float32).copy()


def point_scores(win_err: np.ndarray, n_points: int) -> np.ndarray:
    """Per-point score = mean of the per-position errors of every stride-1 window covering that point.

    win_err: (n_windows, w) errors, window i covering points i..i+w-1 (n_points = n_windows + w - 1).
    """
    n, w = win_err.shape
    total = np.zeros(n_points, np.float64)
    count = np.zeros(n_points, np.float64)
    for j in range(w):
        total[j:j + n] += win_err[:, j]
        count[j:j + n] += 1
    return (total / np.maximum(count, 1)).astype(np.float64)


def _cap(x: np.ndarray, n: int, seed: int, stream: int) -> np.ndarray:
    """A seeded random subset of n rows (n = 0: all), kept in original order."""
    if not n or n >= len(x):
        return np.arange(len(x))
    return np.sort(data_rng(seed, stream).choice(len(x), n, replace=False))


# --- the three tasks -------------------------------------------------------------------------------------
def load(cfg: AEConfig) -> Prepared:
    if cfg.dataset == "fashion-oneclass":
        ds = load_dataset("fashion-mnist", seed=cfg.seed)
        spec = {"kind": "image", "input_shape": list(IMAGE_SHAPE), "scale": 1 / 255.0,
                "normal_class": cfg.normal_class, "normal_class_name": ds.classes[cfg.normal_class],
                "classes": ds.classes, "error_blur": cfg.error_blur,
                "raw_input": "grey pixels 0..255, shape (N, 28, 28)"}
        train = ds.train.x[ds.train.y == cfg.normal_class]
        train = train[_cap(train, cfg.max_train, cfg.seed, 1)]
        val = ds.val.x[ds.val.y == cfg.normal_class]
        keep = _cap(ds.test.x, cfg.max_test, cfg.seed, 2)
        return Prepared("image", preprocess(train, spec), preprocess(val, spec), preprocess(ds.test.x[keep], spec),
                        (ds.test.y[keep] != cfg.normal_class).astype(np.int64), spec, keep,
                        test_classes=ds.test.y[keep])

    if cfg.dataset == "shuttle":
        ds = load_dataset("shuttle", seed=cfg.seed)
        train = ds.train.x[ds.train.y == 0]
        train = train[_cap(train, cfg.max_train, cfg.seed, 1)]
        mean = train.mean(0)
        std = np.maximum(train.std(0), 1e-6)
        spec = {"kind": "tabular", "input_shape": [train.shape[1]], "mean": mean.tolist(), "std": std.tolist(),
                "features": list(ds.info.get("features", [f"f{i + 1}" for i in range(train.shape[1])])),
                "raw_input": f"rows of {train.shape[1]} numeric features"}
        val = ds.val.x[ds.val.y == 0]
        keep = _cap(ds.test.x, cfg.max_test, cfg.seed, 2)
        return Prepared("tabular", preprocess(train, spec), preprocess(val, spec), preprocess(ds.test.x[keep], spec),
                        ds.test.y[keep].astype(np.int64), spec, keep)

    ds = load_dataset("ucr-kdd135")
    w, end = cfg.window, ds.train_end
    val_start = end - cfg.val_points
    if val_start < 2 * w:
        raise DlmError(f"--val-points {cfg.val_points} leaves fewer than {2 * w} training points; lower it")
    prefix = ds.values[:val_start]
    spec = {"kind": "series", "input_shape": [1, w], "window": w, "mean": float(prefix.mean()),
            "std": float(max(prefix.std(), 1e-6)), "series": ds.info.get("series", ""),
            "raw_input": "one univariate series (1-D array or one-column CSV)"}
    z = preprocess(ds.values, spec)
    x_train = windows(z[:val_start], w)
    x_train = x_train[_cap(x_train, cfg.max_train, cfg.seed, 1)]
    test_ids = np.arange(end, len(z))
    return Prepared("series", x_train, windows(z[val_start:end], w), windows(z[end:], w),
                    ds.labels[end:].astype(np.int64), spec, test_ids, series=ds.values, series_labels=ds.labels)
