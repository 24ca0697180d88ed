"""draw_graph: the computation graph of a small expression as a PNG (matplotlib only, no graphviz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlm_core.plotting import plt, save_figure

from .tensor import Tensor


def _all_nodes(root: Tensor) -> list[Tensor]:
    """Every node (constants too), parents before children, iteratively."""
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
        elif id(node) not in visited:
            visited.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in reversed(_inputs(node)) if id(p) not in visited)
    return order


def _inputs(node: Tensor) -> tuple[Tensor, ...]:
    return node._parents


def _fmt(a: np.ndarray | None) -> str:
    if a is None:
        return "-"
    a = np.asarray(a)
    if a.size == 1:
        return f"{a.item():.4g}"
    flat = ", ".join(f"{v:.3g}" for v in a.ravel()[:3])
    return f"{a.shape} [{flat}{', ...' if a.size > 3 else ''}]"


def draw_graph(root: Tensor, path: str | Path, title: str = "") -> Path:
    """Draw the graph that produced `root`: one box per node (name or op, value, grad), inputs on the left.

    Call root.backward() first to see the gradients. Graphs over ~60 nodes get unreadable: use it on small
    expressions. Constants folded into an op (a python number in `x * 2`) show up as unnamed leaves.
    """
    nodes = _all_nodes(root)
    if len(nodes) > 200:
        raise ValueError(f"the graph has {len(nodes)} nodes; draw_graph is for small expressions (<= 200)")
    depth: dict[int, int] = {}
    for n in nodes:  # parents come first: the column of a node is 1 + the deepest of its inputs
        depth[id(n)] = 1 + np.max([depth[id(p)] for p in _inputs(n)]) if _inputs(n) else 0
    for n in reversed(nodes):  # a leaf sits just left of its first consumer
        for p in _inputs(n):
            if not _inputs(p):
                depth[id(p)] = min(depth[id(p)] if depth[id(p)] > 0 else depth[id(n)] - 1, depth[id(n)] - 1)
    columns: dict[int, list[Tensor]] = {}
    for n in nodes:
        columns.setdefault(depth[id(n)], []).append(n)
    pos = {}
    for col, members in columns.items():
        for row, n in enumerate(members):
            pos[id(n)] = (col * 3.2, -(row - (len(members) - 1) / 2) * 1.6)

    pyplot = plt()
    width = max(4.0, 2.2 * (len(columns)))
    height = max(2.5, 1.1 * max(len(m) for m in columns.values()))
    fig, ax = pyplot.subplots(figsize=(width, height))
    for n in nodes:
        x1, y1 = pos[id(n)]
        for p in _inputs(n):
            x0, y0 = pos[id(p)]
            ax.annotate("", xy=(x1 - 1.05, y1), xytext=(x0 + 1.05, y0),
                        arrowprops={"arrowstyle": "->", "color": "0.45", "lw": 1})
    for n in nodes:
        x, y = pos[id(n)]
        label = n.name or (n.op if n.op else ("leaf" if n.requires_grad else "const"))
        if n.name and n.op:
            label = f"{n.name} = {n.op}"
        text = f"{label}\nvalue {_fmt(n.data)}\ngrad {_fmt(n.grad)}"
        color = "#dbe9f6" if not n.op else ("#fde4c8" if n is root else "#e6f2dd")
        ax.text(x, y, text, ha="center", va="center", fontsize=8, family="monospace",
                bbox={"boxstyle": "round,pad=0.4", "fc": color, "ec": "0.35"})
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.6, max(xs) + 1.6)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.axis("off")
    ax.set_title(title or "computation graph (blue: leaves, green: ops, orange: output)")
    return save_figure(fig, path)
