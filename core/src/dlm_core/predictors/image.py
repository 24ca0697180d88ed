"""Image predictors (one preprocess schema for p03's classifier and p07's anomaly detector).

A raw image is an array of pixel values 0..255 of the model's own size (H x W grey, H x W x 3 RGB or 1 x H x W),
or the bytes of a PNG/JPEG file, or that file as base64 text. A file's declared size is read from its header and
checked before any pixel is decoded (a few KB of PNG can declare 400 MB of pixels); it is then converted to grey
and resized to the model's size (bilinear). An array of another size is refused, not resized: it is more likely
a client's mistake than a picture. Then scaled and standardised exactly as in training.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np

from .base import BadInput, BatchOutput, InputTooLarge, Predictor, expect_single_input, softmax_topk, v2_spec

MAX_SIDE = 4096
FORMATS = ("PNG", "JPEG")


def decode_image(item, height: int, width: int) -> np.ndarray:
    """Raw image -> (height, width) float32 pixel values in 0..255."""
    if isinstance(item, str):
        try:
            item = base64.b64decode(item.split(",", 1)[-1] if item.startswith("data:") else item, validate=True)
        except (binascii.Error, ValueError):
            raise BadInput("image text is not valid base64 (send a base64 PNG/JPEG, or a 2-D array of "
                           "pixels)") from None
    if isinstance(item, (bytes, bytearray)):
        return decode_file(bytes(item), height, width)
    try:
        arr = np.asarray(item, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise BadInput("image must be a 2-D array of numbers (pixel values 0..255) or a base64 PNG") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    elif arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise BadInput(f"image array has shape {list(arr.shape)}; expected [height, width] (or [h, w, 3])")
    if arr.shape != (height, width):
        raise BadInput(f"image array has shape {list(arr.shape)}; this model takes [{height}, {width}] pixels "
                       f"(or [{height}, {width}, 3]); send a PNG/JPEG to have another size resized")
    lo, hi = arr.min(), arr.max()
    if not (lo >= 0 and hi <= 255):  # one pass each; NaN fails both comparisons, inf the upper one
        if not np.isfinite(arr).all():
            raise BadInput("image has NaN or infinite pixel values")
        raise BadInput(f"pixel values must lie in 0..255, got {lo:g}..{hi:g}")
    return arr


def decode_file(data: bytes, height: int, width: int) -> np.ndarray:
    """PNG/JPEG bytes -> (height, width) grey pixels: the header's declared size is checked first (Image.open reads
    only the header; the pixels are decoded by load())."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow warns above 89 M pixels; ours is the lower limit below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours: the same answer
        raise InputTooLarge(f"image declares too many pixels; at most {MAX_SIDE} px a side") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise BadInput(f"image does not decode ({err.__class__.__name__}); send a PNG or JPEG") from None
    if max(img.size) > MAX_SIDE:
        raise InputTooLarge(f"image is {img.size[0]}x{img.size[1]}; at most {MAX_SIDE} px a side")
    try:
        arr = np.asarray(img.convert("L"), dtype=np.float32)
    except (OSError, ValueError, SyntaxError) as err:
        raise BadInput(f"image does not decode ({err.__class__.__name__}); send a PNG or JPEG") from None
    if arr.shape != (height, width):
        arr = np.asarray(Image.fromarray(arr, mode="F").resize((width, height), Image.BILINEAR), np.float32)
    return arr


def image_features(x01: np.ndarray) -> np.ndarray:
    """Per-image numeric features for drift (x01: (n, H, W) in 0..1): brightness, contrast, ink fraction,
    centre of mass (row, col, in 0..1) and edge strength (mean absolute gradient)."""
    n, h, w = x01.shape
    mass = x01.sum((1, 2)) + 1e-6
    rows = (x01.sum(2) * np.arange(h)).sum(1) / mass / max(h - 1, 1)
    cols = (x01.sum(1) * np.arange(w)).sum(1) / mass / max(w - 1, 1)
    edges = np.abs(np.diff(x01, axis=1)).mean((1, 2)) + np.abs(np.diff(x01, axis=2)).mean((1, 2))
    return np.stack([x01.mean((1, 2)), x01.std((1, 2)), (x01 > 0.5).mean((1, 2)), rows, cols, edges],
                    1).astype(np.float32)


class ImagePredictor(Predictor):
    feature_names = ["brightness", "contrast", "ink_fraction", "center_row", "center_col", "edge_strength"]

    def __init__(self, bundle, threads: int = 1):
        super().__init__(bundle, threads)
        p = self.pre
        self.shape = (p["channels"], p["height"], p["width"])
        self.mean = np.asarray(p["mean"], np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(p["std"], np.float32).reshape(-1, 1, 1)

    def prepare(self, item) -> np.ndarray:
        """Raw image -> one normalised (C, H, W) float32 row."""
        pixels = decode_image(item, self.shape[1], self.shape[2])
        return ((pixels[None] * self.pre["scale"] - self.mean) / self.std).astype(np.float32)

    def rows_from_v2(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """v2 takes the graph's own tensor: (N, C, H, W) float32, already normalised."""
        x = expect_single_input(inputs, self.pre["graph_input"])
        if x.dtype != np.float32:
            raise BadInput(f"input {self.pre['graph_input']!r} must be FP32, got {x.dtype}")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise BadInput(f"input {self.pre['graph_input']!r} has shape {list(x.shape)}; expected "
                           f"[-1, {', '.join(map(str, self.shape))}]")
        if not np.isfinite(x).all():
            raise BadInput("input has NaN or infinite values")
        return list(x)

    def _forward(self, rows: list[np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        batch = np.stack(rows).astype(np.float32, copy=False)
        out = self.run_graph(self.post["graph"], {self.pre["graph_input"]: batch})
        x01 = ((batch * self.std + self.mean) / self.pre["scale"] / 255.0).mean(1)  # back to 0..1 grey
        return out, image_features(x01)

    def graph_spec(self) -> dict:
        return self.manifest["graphs"][self.post["graph"]]

    def v2_inputs(self) -> list[dict]:
        return [v2_spec(s["name"], s["dtype"], s["shape"]) for s in self.graph_spec()["inputs"]]

    def v2_outputs(self) -> list[dict]:
        return [v2_spec(s["name"], s["dtype"], s["shape"]) for s in self.graph_spec()["outputs"]]

    def example_input(self):
        return np.zeros(self.shape[1:], np.uint8).tolist()


class ImageClassifier(ImagePredictor):
    task = "image-classification"
    prediction_kind = "class"

    def run(self, rows: list[np.ndarray]) -> BatchOutput:
        out, feats = self._forward(rows)
        probs, top, results = softmax_topk(out[self.post["output"]], self.post["labels"], self.post["top_k"])
        emb = out.get(self.post["embedding_output"]) if self.post["embedding_output"] else None
        return BatchOutput(results, out, feats, top[:, 0].astype(np.float32), emb)


class AnomalyDetector(ImagePredictor):
    task = "anomaly-detection"
    prediction_kind = "score"

    def run(self, rows: list[np.ndarray]) -> BatchOutput:
        out, feats = self._forward(rows)
        score = out[self.post["output"]].reshape(len(rows)).astype(np.float64)
        thr = float(self.post["threshold"])
        flag = score > thr if self.post["higher_is_anomalous"] else score < thr
        normal, anomaly = self.post["labels"]
        results = [{"prediction": anomaly if f else normal, "score": float(s), "threshold": thr,
                    "is_anomaly": bool(f)} for s, f in zip(score, flag)]
        emb = out.get(self.post["embedding_output"]) if self.post["embedding_output"] else None
        if emb is not None:
            emb = emb.reshape(len(rows), -1)
        return BatchOutput(results, out, feats, score.astype(np.float32), emb)
