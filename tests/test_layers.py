"""Imports point one way: a lower layer never imports a higher one, and no modules import each other in a cycle.

Every ``import`` statement of the package is read from the source (lazy imports inside functions
included), so a cycle hidden behind a function-level import is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "circuitgnn"

# Bottom to top; a module may import its own layer or any layer below it.
LAYERS: list[set[str]] = [
    {"version", "errors", "interrupts", "device", "threads", "config"},
    {"data"},
    {"simulate"},
    {"model"},
    {"train"},
    {"analyze"},
    {"estimator", "fit_jobs", "ensemble", "ensemble_run"},
    {"report"},
    {"reproduce", "cli", "__init__", "__main__"},
]


def _layer(module: str) -> int:
    """Layer index of a dotted module name under circuitgnn (its first component)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for k, names in enumerate(LAYERS):
        if top in names:
            return k
    raise AssertionError(f"{module}: its folder or file {top!r} is in no layer of tests/test_layers.py: add it")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__") if name.endswith(".__init__") else name] = path
    return out


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The package modules that ``path`` imports (``from circuitgnn.x import y`` counts y when y is a module)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("circuitgnn")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("circuitgnn"):
                continue
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(path, name, set(mods)) for name, path in mods.items()}


def test_every_import_points_down_or_sideways():
    wrong = [
        f"{src} (layer {_layer(src)}) imports {dst} (layer {_layer(dst)})"
        for src, targets in _graph().items()
        for dst in targets
        if _layer(dst) > _layer(src) and dst != "circuitgnn"
    ]
    assert not wrong, "imports from a lower layer to a higher one:\n" + "\n".join(sorted(wrong))


def test_no_module_depends_on_itself_through_others():
    graph = {k: {d for d in v if d != "circuitgnn"} for k, v in _graph().items()}  # the package's own __init__ only re-exports
    graph["circuitgnn"] = set()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_lower_module_imports_the_package_root():
    """``from circuitgnn import x`` loads everything: only the top layer may do it."""
    bad = [src for src, targets in _graph().items() if "circuitgnn" in targets and _layer(src) < len(LAYERS) - 1]
    assert not bad, f"modules importing the package root: {bad}"


@pytest.mark.parametrize("source, expected", [("from circuitgnn.train.trainer import Trainer", {"circuitgnn.train.trainer"})])
def test_the_import_reader_finds_imports(tmp_path, source, expected):
    f = tmp_path / "m.py"
    f.write_text(f"def f():\n    {source}\n")
    assert _imports(f, "circuitgnn.analyze.m", set(_modules())) == expected
