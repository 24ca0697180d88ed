"""Config dataclasses <-> argparse. Every knob lives in one dataclass; flags are generated from it.

    parser = ArgumentParser(prog="run_x", description=...)
    add_config_args(parser, Config)             # --lr, --batch-size, --augment/--no-augment ...
    args = parser.parse_args(argv)
    cfg = config_from_args(Config, args, base=PRESETS[args.preset])   # explicit flags override the preset

Validation belongs in the dataclass's __post_init__ (raise DlmError): the CLI prints one line, exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from .errors import DlmError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (`error: ...`) and exits 2."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def add_config_args(parser: argparse.ArgumentParser, cls, exclude: tuple[str, ...] = (), prefix: str = "",
                    title: str = "config") -> None:
    """One flag per field of `cls`: --field-name, or the field's metadata["flag"]; `prefix` is prepended to the
    flag and the dest (so two dataclasses can share a parser); fields with metadata["cli"] = False are skipped."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init or not f.metadata.get("cli", True):
            continue
        flag = f.metadata.get("flag") or "--" + (prefix + f.name).replace("_", "-")
        typ = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {default})" if help_text else f"(default: {default})"
        origin = typing.get_origin(typ)
        args = typing.get_args(typ)
        if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            non_none = [a for a in args if a is not type(None)]
            typ = non_none[0] if len(non_none) == 1 else str
            origin, args = typing.get_origin(typ), typing.get_args(typ)
        kwargs = {"dest": prefix + f.name, "default": argparse.SUPPRESS, "help": help_text}
        if typ is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif origin is typing.Literal:
            group.add_argument(flag, choices=list(args), type=type(args[0]), **kwargs)
        elif origin in (list, tuple):
            inner = args[0] if args else str
            group.add_argument(flag, type=_comma_list(inner), metavar="A,B,...", **kwargs)
        else:  # the metavar follows the flag (not the dest, which a prefix or a metadata flag may change)
            group.add_argument(flag, type=typ, metavar=flag[2:].replace("-", "_").upper(), **kwargs)


def _comma_list(inner):
    def parse(text: str):
        return [inner(t) for t in text.split(",") if t.strip()]

    parse.__name__ = f"list[{getattr(inner, '__name__', 'str')}]"
    return parse


def config_from_args(cls, args: argparse.Namespace, base=None, prefix: str = ""):
    """The preset (or defaults) with every flag the user gave applied on top; validated by __post_init__."""
    base = base if base is not None else cls()
    given = {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls) if hasattr(args, prefix + f.name)}
    try:
        return dataclasses.replace(base, **given)
    except (TypeError, ValueError) as err:
        raise DlmError(f"bad config: {err}") from None


# Flags a resumed run may change: how long it runs, how it logs, where and on how many threads; never what
# it trains or on what data. A config class may widen or narrow this with a RESUMABLE class attribute.
RESUMABLE = frozenset({"epochs", "max_steps", "total_steps", "steps", "max_minutes", "patience", "device", "threads",
                       "log_every", "eval_every", "eval_episodes", "progress"})


# Fields that older runs saved and no config has any more: test-only sleeps that never changed a result (the
# kill/resume test now injects its pause from outside). A resume of such a run drops them.
RETIRED = frozenset({"epoch_delay", "step_delay"})


def add_run_args(parser: argparse.ArgumentParser, presets: dict, project: str, preset_help: str = "") -> None:
    """The --preset / --run-dir / --resume trio every training CLI shares (see run_config)."""
    parser.add_argument("--preset", choices=sorted(presets), default=None,
                        help=preset_help or "base config; flags given override it (default: default)")
    parser.add_argument("--run-dir", default=None, help=f"run folder (default: runs/{project}/<timestamp>)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR",
                        help="continue a run from its latest checkpoint with its own saved config (only budget, "
                             "logging, device and thread flags may be given)")


def resume_config(cls, saved: dict, args: argparse.Namespace, run_path):
    """A resumed run's config: its saved config.json is the truth. Flags in RESUMABLE may change it (epochs,
    device, threads...); any other flag that differs from the saved value is refused with one line naming it,
    before anything in the run folder is touched."""
    saved = {k: v for k, v in saved.items() if k not in RETIRED}
    try:
        base = cls(**saved)
    except TypeError as err:
        raise DlmError(f"{run_path}/config.json does not fit this trainer's config ({err}); was it made by "
                       "another project or version?") from None
    allowed = getattr(cls, "RESUMABLE", RESUMABLE)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    refused = [k for k, v in given.items() if v != getattr(base, k) and k not in allowed]
    if refused:
        k = refused[0]
        shown = lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v  # noqa: E731 - as typed
        raise DlmError(f"--resume continues {run_path} with its own config: --{k.replace('_', '-')} {shown(given[k])} "
                       f"would change it (saved: {shown(getattr(base, k))}); drop the flag, or start a new run to "
                       f"change {', '.join(refused)}")
    return config_from_args(cls, argparse.Namespace(**given), base=base)


def run_config(cls, args: argparse.Namespace, presets: dict, base=None):
    """(config, run_dir, resume) from add_run_args' flags: a resumed run starts from its own saved config
    (resume_config); a fresh one from `base` (default: the --preset named, else "default") with the flags on top."""
    if args.resume:
        from .runs import RunDir

        if args.preset is not None:
            raise DlmError("--resume continues a run with its own saved config; drop --preset")
        if args.run_dir is not None:
            raise DlmError("--resume RUN_DIR names the run already; drop --run-dir")
        run = RunDir.open(args.resume)  # one clear error if it is not a run folder
        return resume_config(cls, run.load_config(), args, run.path), run.path, True
    base = presets[args.preset or "default"] if base is None else base
    return config_from_args(cls, args, base=base), args.run_dir, False


def check(condition: bool, message: str) -> None:
    """Validation helper for __post_init__: check(self.lr > 0, '--lr must be > 0')."""
    if not condition:
        raise DlmError(message)
