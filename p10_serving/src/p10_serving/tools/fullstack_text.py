"""run_fullstack --task text: the pieces of the loop that are the Debian section classifier's (the rest is
fullstack.py's, shared with the image task).

    train     run_section_classifier --preset quick --no-baseline --version v1 (OUT/artifacts/package-section/v1)
    stream    bookworm package descriptions the model never trained on (the validation packages, its drift
              reference: see in_domain), in a seeded order, then after `--shift-after` rows the packages new in
              Debian 13 trixie (`debian-packages-trixie-new`, its `stream` split); each row is
              {"input": description}, its label the package's section
    retrain   run_section_retrain EVENT --runs-root OUT/runs (p06: train split + the feedback, vocabulary refitted)
    evaluate  the first and the swapped-in bundle on the trixie `test` split (1,000 packages, never streamed)

Nothing here imports p06: the stages are its console scripts, the data come from dlm_core.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

from dlm_core.errors import DlmError

from .stages import Stream, Task, stage, tool

MODEL = "package-section"
SHIFT = "debian-packages-trixie-new"


def text_task(args) -> Task:
    if args.shift not in (None, "trixie", SHIFT):
        raise DlmError(f"--shift {args.shift!r}: the text task has one shift, trixie (the packages new in Debian 13)")
    if args.preset not in ("quick", "default"):
        raise DlmError(f"--preset {args.preset}: run_section_classifier has the presets quick and default")
    # more feedback than for images: the shift costs fewer points (0.67 -> ~0.60), so the gate's McNemar test
    # needs more held-out rows (200 of 1,000) to see the retrained model's gain, and the retrain more examples
    return Task("text", MODEL, None if args.no_shift else SHIFT, train, stream, retrain_command, evaluate,
                min_recovery=0.05, min_feedback=1000)


def train(args, out: Path, env: dict, stages: dict[str, float]) -> Path:
    """The first bundle, OUT/artifacts/package-section/v1 (skipped when it is there)."""
    bundle = out / "artifacts" / MODEL / "v1"
    if not (bundle / "manifest.json").exists():
        cmd = [tool("run_section_classifier"), "--preset", args.preset, "--no-baseline", "--version", "v1",
               "--seed", str(args.seed), "--out", str(out / "train"), "--overwrite", *shlex.split(args.train_args)]
        stages["train"] = stage("train", cmd, out / "train.log", env)
    return bundle


def retrain_command(args, out: Path) -> str:
    epochs = f" --epochs {args.retrain_epochs}" if args.retrain_epochs else ""
    return f"{tool('run_section_retrain')} --runs-root {out / 'runs'}{epochs}"


def cycled(n_pool: int, n: int, seed: list[int]) -> np.ndarray:
    """n indices into a pool of n_pool: seeded permutations, one after another (cycled if n > n_pool)."""
    reps = max(1, -(-n // n_pool))
    return np.concatenate([np.random.default_rng(seed + [k]).permutation(n_pool) for k in range(reps)])[:n]


def in_domain(classes: list[str], seed: int, n: int) -> tuple[list[str], np.ndarray]:
    """n bookworm descriptions, cycled in seeded orders: the validation packages (the bundle's drift reference).

    Why not packages the reference never saw: the only bookworm packages the model did not train on are the val
    and test splits, and run_section_classifier's drift reference is all 2,000 validation texts. The test split
    differs from it a little but systematically (test texts are shorter: 379 characters on average against 407
    for val, 396 for train; the splits are by source package, whose binaries share their texts), and the
    monitor sees that: of three seeded 300-row windows of test packages one alerted and one warned (prediction
    chi-square p = 1e-4; lengths p = 0.002), where three windows of val packages were quiet. Two alert windows in
    a row open an episode, so a test-package stream would retrain with no shift at all. The unshifted traffic is
    therefore the traffic the reference describes; the control tests that the monitor and the accuracy criterion
    stay quiet on it (the model was not trained on it; its accuracy there is close to its test accuracy)."""
    from dlm_core.data import load_dataset

    ds = load_dataset("debian-packages", seed=0)
    pos = {c: i for i, c in enumerate(classes)}
    docs = [ds.docs[i] for i in ds.val]
    order = cycled(len(docs), n, [seed, 0])
    return [docs[i]["text"] for i in order], np.array([pos[docs[i]["section"]] for i in order], dtype=np.int64)


def shifted(classes: list[str], seed: int, n: int) -> tuple[list[str], np.ndarray]:
    """n trixie-new descriptions of the `stream` split (cycled, in a new order, if n is larger than it)."""
    from dlm_core.data import load_dataset

    ds = load_dataset(SHIFT)
    texts, y = ds.split("stream")
    pos = {c: i for i, c in enumerate(classes)}
    order = np.arange(n) if n <= len(texts) else cycled(len(texts), n, [seed, 1])
    return [texts[i] for i in order], np.array([pos[ds.labels[y[i]]] for i in order], dtype=np.int64)


def stream(args, classes: list[str]) -> Stream:
    n_in = args.max_rows if args.no_shift else min(args.shift_after, args.max_rows)
    texts, y = in_domain(classes, args.seed, n_in)
    if not args.no_shift and args.max_rows > n_in:
        more, more_y = shifted(classes, args.seed, args.max_rows - n_in)
        texts, y = texts + more, np.concatenate([y, more_y])
    return Stream(y, lambda i: ({"input": texts[i]}, not args.no_shift and i >= n_in))


def evaluate(bundle: Path, events: list[dict]) -> dict:
    """Accuracy of the first and (if one was swapped in) the retrained bundle on the trixie `test` split."""
    from dlm_core.data import load_dataset
    from dlm_core.predictors import load_predictor

    from ..lifecycle.gate import predict_classes

    ds = load_dataset(SHIFT)
    texts, y = ds.split("test")
    versions = {"v1": bundle} | {e["version"]: bundle.parent / e["version"] for e in events if e["kind"] == "swap"}
    acc = {}
    for version, path in versions.items():
        p = load_predictor(str(path), threads=1)
        pos = {c: i for i, c in enumerate(p.manifest["postprocess"]["labels"])}
        acc[version] = float(np.mean(predict_classes(p, texts) == np.array([pos[ds.labels[k]] for k in y])))
    return {"split": f"{SHIFT} test", "rows": len(y), "accuracy": acc}
