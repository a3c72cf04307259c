"""The import rules of the architecture, read from the code (lazy imports included).

Every ``import bci_app.X...`` / ``from bci_app.X... import`` statement anywhere in a module,
also inside functions, counts: a lazy import across a forbidden edge is still an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "bci_app"

# package -> packages it must never import (ARCHITECTURE.md, "Imports point one way")
ALL = {"stimuli", "preprocessing", "simulation", "acquisition", "models", "datasets",
       "training", "evaluation", "session", "ui", "config", "cli", "doctor"}
NEVER: dict[str, set[str]] = {
    "stimuli": ALL - {"stimuli"},
    "preprocessing": ALL - {"preprocessing", "stimuli"},
    "simulation": ALL - {"simulation", "stimuli", "preprocessing"},
    "acquisition": {"models", "datasets", "training", "evaluation", "session", "ui", "cli"},
    "models": {"acquisition", "datasets", "training", "evaluation", "session", "ui", "config", "cli"},
    "datasets": {"models", "acquisition", "training", "evaluation", "session", "ui", "cli"},
    "training": {"evaluation", "acquisition", "session", "ui", "cli"},
    "evaluation": {"training", "acquisition", "session", "ui", "cli"},
    "ui": {"models", "datasets", "training", "evaluation", "session", "cli"},
    "session": {"training", "evaluation", "cli"},
    # below every layer (each one's loaders name damaged files through it): imports none
    "file_errors": ALL,
    # the plain data the live threads pass each other (Trial, InferenceResult): imports none
    "messages": ALL,
}


def _top(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "bci_app" or len(parts) < 2:
        return None
    return parts[1]


def package_imports(root: Path = PKG) -> dict[str, set[tuple[str, str, int]]]:
    """package -> {(imported package, file, line)} for every bci_app import in the tree."""
    found: dict[str, set[tuple[str, str, int]]] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "bci_app":
                    names = [f"bci_app.{a.name}" for a in node.names]
            for name in names:
                top = _top(name)
                if top is not None and top != own:
                    found.setdefault(own, set()).add((top, str(rel), node.lineno))
    return found


def test_no_import_across_a_never():
    bad = [f"{file}:{line} ({own} -> {top})"
           for own, edges in package_imports().items()
           for top, file, line in edges if top in NEVER.get(own, set())]
    assert not bad, "imports across a 'never' of ARCHITECTURE.md:\n" + "\n".join(sorted(bad))


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for own, edges in package_imports().items():
        graph.setdefault(own, set()).update(top for top, _, _ in edges)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                pytest.fail("package import cycle: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_the_checker_sees_lazy_and_package_imports(tmp_path):
    # the rule reader must not be blind to imports inside functions, nor to
    # ``from bci_app import session``
    ui = tmp_path / "ui"
    ui.mkdir()
    (ui / "window.py").write_text(
        "import numpy\n\n\ndef f():\n    from bci_app.session import commands\n"
        "    from bci_app import models\n    return commands, models\n"
    )
    edges = package_imports(tmp_path)["ui"]
    assert {(top, line) for top, _, line in edges} == {("session", 5), ("models", 6)}
