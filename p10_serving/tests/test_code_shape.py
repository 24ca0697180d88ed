"""The layout rule of issue #30 kept as a test: no function in p10_serving is longer than 60 lines (a route body or
a helper that grows past a screen is split, not tolerated), and app.py only composes."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "p10_serving"


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_in_p10_serving_is_longer_than_60_lines():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10  # the package is there
    long = [f"{p.relative_to(SRC)}:{line} {name} ({n} lines)"
            for p in files for name, line, n in functions(p) if n > 60]
    assert long == []


def test_the_checker_sees_a_long_function(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n" + "    x = 1\n" * 70)
    assert [n for _, _, n in functions(src)] == [71]


ROUTE_DECORATORS = {"get", "post", "put", "delete", "api_route", "route"}


def test_app_composes_and_holds_no_route_body():
    tree = ast.parse((SRC / "app.py").read_text())
    routes = [d for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
              for d in node.decorator_list
              if isinstance(d, ast.Call) and getattr(d.func, "attr", "") in ROUTE_DECORATORS]
    assert routes == []
