"""The package's shape: no import circle among its modules (lazy imports inside functions
included), the C++ core imported by Python only, the research wing imported by no product module
but the command line, and no product module over the size one job needs."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "euds"
# Modules whose one job needs more lines (their docstrings say why).
LONG = {"euds.models", "euds.cli"}
MAX_LINES = 650


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every euds module a module imports, anywhere in it."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                base = node.module
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in modules else base)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_circle():
    graph = imports()
    # A package's __init__ re-exports its modules: importing the package is not a cycle edge.
    edges = {
        m: {d for d in deps if not (m.startswith(d + ".") and d != "euds")}
        for m, deps in graph.items()
    }
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(edges.get(m, ())):
            if d == "euds":
                continue
            if state.get(d) == 1:
                cycle = [*path[path.index(d) :], d]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_the_research_wing_stays_out_of_the_product():
    graph = imports()
    for m, deps in graph.items():
        if m.startswith("euds.research") or m == "euds.cli":
            continue
        assert not any(d.startswith("euds.research") for d in deps), (
            f"{m} imports the research wing"
        )


def test_no_product_module_outgrows_its_job():
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name in LONG:
            continue
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_LINES, f"{name} has {lines} lines"
