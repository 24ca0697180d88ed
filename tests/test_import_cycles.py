"""No import cycles inside a package, counting the imports hidden inside functions too: a cycle there still
makes two modules one concern, and breaks the day someone moves an import to the top.

Every module of a package counts, subpackages included: `predictors.base` for predictors/base.py, `predictors`
for predictors/__init__.py, `__init__` for the package's own __init__.py. Relative imports of any level and
absolute imports of the package itself are edges; `from pkg import name` is an edge to the submodule `name`
when there is one, else to `pkg`. Importing `sub.b` from outside `sub` also runs sub/__init__.py: an edge to
`sub` as well.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in REPO.glob("*/src/*") if p.is_dir() and (p / "__init__.py").exists())
ROOT = "__init__"


def module_parts(pkg: Path) -> dict[tuple[str, ...], Path]:
    """(parts relative to the package) -> file; () is the package's own __init__.py."""
    out = {}
    for f in sorted(pkg.rglob("*.py")):
        parts = f.relative_to(pkg).with_suffix("").parts
        out[parts[:-1] if parts[-1] == "__init__" else parts] = f
    return out


def name(parts: tuple[str, ...]) -> str:
    return ".".join(parts) or ROOT


def edges(pkg: Path) -> dict[str, set[str]]:
    mods = module_parts(pkg)

    def known(parts: tuple[str, ...]) -> tuple[str, ...]:
        while parts and parts not in mods:  # a name inside a module: the module
            parts = parts[:-1]
        return parts

    out = {}
    for me, f in mods.items():
        here = me if f.name == "__init__.py" else me[:-1]  # the package `from . import` means
        targets = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                for a in node.names:
                    top, *rest = a.name.split(".")
                    if top == pkg.name:
                        targets.add(known(tuple(rest)))
            elif isinstance(node, ast.ImportFrom):
                if node.level > len(here) + 1:
                    continue  # above the package: not one of its modules
                if node.level:
                    base = here[:len(here) - node.level + 1]
                    module = base + tuple(node.module.split(".") if node.module else ())
                elif node.module and node.module.split(".")[0] == pkg.name:
                    module = tuple(node.module.split(".")[1:])
                else:
                    continue
                for a in node.names:
                    targets.add(known(module + (a.name,)))  # a submodule, else the module itself
        deps = set()
        for t in targets:
            # importing `sub.b` runs every package above it that `me` is not already inside
            deps.update(t[:i] for i in range(1, len(t) + 1) if me[:i] != t[:i])
            deps.add(t)
        out[name(me)] = {name(d) for d in deps} - {name(me)}
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a] (depth-first, in sorted order), or None."""
    done, path = set(), []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if cycle := visit(dep):
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if cycle := visit(start):
            return cycle
    return None


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "pkg"


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_checker_resolves_every_kind_of_import(tmp_path):
    pkg = write_tree(tmp_path, {
        "pkg/__init__.py": "from .a import y\n",
        "pkg/a.py": "from . import v2, z\nfrom .sub.b import x\nimport os\ny = 1\n",
        "pkg/v2.py": "import pkg.sub\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "from pkg.a import y\nfrom .. import v2\n\ndef f():\n    from . import c\n",
        "pkg/sub/c.py": "from ...outside import q\n",
    })
    assert edges(pkg) == {"__init__": {"a"}, "a": {"__init__", "v2", "sub", "sub.b"}, "v2": {"sub"},
                          "sub": set(), "sub.b": {"a", "v2", "sub.c"}, "sub.c": set()}


def test_the_checker_finds_a_cycle_through_a_subpackage(tmp_path):
    pkg = write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .sub import x\n",
        "pkg/sub/__init__.py": "from .b import x\n",
        "pkg/sub/b.py": "x = 1\n\ndef f():\n    from ..a import y\n",
    })
    assert find_cycle(edges(pkg)) == ["a", "sub", "sub.b", "a"]
    (pkg / "sub" / "b.py").write_text("x = 1\n")
    assert find_cycle(edges(pkg)) is None


def test_the_checker_finds_a_cycle_with_a_subpackage_init(tmp_path):
    pkg = write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .sub.b import x\n",
        "pkg/sub/__init__.py": "def f():\n    from pkg.a import y\n",
        "pkg/sub/b.py": "x = 1\n",
    })
    assert find_cycle(edges(pkg)) == ["a", "sub", "a"]  # importing sub.b runs sub/__init__.py first


@pytest.mark.parametrize("pkg", PACKAGES, ids=[p.name for p in PACKAGES])
def test_no_import_cycle_inside_a_package(pkg):
    cycle = find_cycle(edges(pkg))
    assert cycle is None, f"import cycle in {pkg.name}: {' -> '.join(cycle)}"
