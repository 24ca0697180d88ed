"""No import cycles inside a package, counting the imports hidden inside functions too: a cycle there still
makes two modules one concern, and breaks the day someone moves an import to the top."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in REPO.glob("*/src/*") if p.is_dir() and (p / "__init__.py").exists())


def edges(pkg: Path) -> dict[str, set[str]]:
    out = {}
    for f in pkg.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        out[f.stem] = deps - {f.stem}
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in sorted(graph.get(node, ())):
                if dep == start:
                    return path + [dep]
                if dep not in path:
                    stack.append((dep, path + [dep]))
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("pkg", PACKAGES, ids=[p.name for p in PACKAGES])
def test_no_import_cycle_inside_a_package(pkg):
    assert find_cycle(edges(pkg)) is None
