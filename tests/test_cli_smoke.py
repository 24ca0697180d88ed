"""Every console script of every package answers --help quickly: exit 0, usage text, and none of the heavy imports
(torch, scikit-learn, matplotlib: each a second or more here) that only a real run needs."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def console_scripts():
    found = []
    for pyproject in sorted(REPO.glob("*/pyproject.toml")):
        scripts = tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {})
        found += [(name, target) for name, target in scripts.items()]
    return found


def test_every_project_declares_its_scripts():
    names = {name for name, _ in console_scripts()}
    assert "dlm" in names
    assert len(names) >= 2


@pytest.mark.parametrize("name,target", console_scripts())
def test_help_is_fast_and_light(name, target):
    module, func = target.split(":")
    code = (
        "import contextlib, io, sys\n"
        f"from {module} import {func} as main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules]\n"
        "print('usage' in buf.getvalue().lower(), ','.join(heavy) or '-')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-1500:]
    has_usage, heavy = proc.stdout.split()
    assert has_usage == "True", f"{name} --help printed no usage"
    assert heavy == "-", f"{name} --help imports {heavy} (slow); import it inside main(), after parsing"


def test_script_is_on_the_venv_path():
    bin_dir = Path(sys.executable).parent
    missing = [name for name, _ in console_scripts() if not (bin_dir / name).exists()]
    assert not missing, f"not installed (run make install): {missing}"


def test_packages_import_without_their_siblings():
    for folder in sorted(REPO.glob("p[0-9][0-9]_*")):
        mod = importlib.import_module(folder.name)
        assert Path(mod.__file__).is_relative_to(folder / "src")
