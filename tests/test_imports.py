"""The package's shape, as docs/architecture.md draws it: no import cycles between modules or between
subpackages, and each part imports only the parts below it. Imports inside functions count too (they still tie
modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pneumonia", "ui")

BASE = "base"
"""The top-level modules every part may use: config, errors, formatting, wording, threshold, tensorflow_logs."""
ALLOWED: dict[str, set[str]] = {
    BASE: set(),
    "io": {BASE},
    "model": {BASE},
    "decision": {BASE, "io"},
    "screening": {BASE, "io", "model", "decision"},
    "explain": {BASE, "model", "screening"},
    "reports": {BASE, "io", "decision", "screening", "explain"},
    "studies": {BASE, "io", "decision", "screening", "reports"},
    "archive": {BASE, "io", "screening"},
    "training": {BASE, "io", "model", "decision", "screening"},
    "pacs": {BASE, "io", "model", "decision", "screening", "explain", "reports"},
    "cli": {BASE, "io", "model", "decision", "screening", "explain", "reports", "studies", "archive", "training", "pacs"},
    "ui": {BASE, "io", "model", "decision", "screening", "explain", "reports", "studies", "pacs", "ui"},
}
"""Which part may import which: `ui` uses the package, never the reverse; nothing at run time (screening, the
pages) imports `training`; the gate and the predictor know nothing of reports or pages."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def import_graph() -> nx.DiGraph:
    """Module -> every project module it imports, at the top or inside a function."""
    found = modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(found)
    for name, path in found.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph.add_edges_from((name, target) for target in targets if target in found and target != name)
    return graph


def part_of(module: str) -> str:
    """The part a module belongs to: its subpackage, `cli` (and `__main__`), `ui`, or the base modules."""
    parts = module.split(".")
    if parts[0] == "ui":
        return "ui"
    if len(parts) == 1 or parts[1] in ("cli", "__main__"):
        return "cli" if len(parts) > 1 else BASE
    return parts[1] if (ROOT / "pneumonia" / parts[1]).is_dir() else BASE


def test_the_graph_sees_every_subpackage_and_imports_inside_functions():
    graph = import_graph()
    assert graph.has_edge("pneumonia.training.gate_fit", "pneumonia.screening.predictor")
    assert graph.has_edge("pneumonia.training.train", "pneumonia.training.gate_fit")  # imported inside a function
    assert graph.has_edge("ui.server", "ui.common")
    parts = {part_of(m) for m in graph}
    assert {"io", "model", "screening", "training", "explain", "decision", "reports", "studies", "archive"} <= parts
    assert parts <= set(ALLOWED), f"a part with no declared imports: {parts - set(ALLOWED)}"


def test_no_module_imports_itself_through_others():
    cycles = sorted(nx.simple_cycles(import_graph()), key=len)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles[:5])


def test_each_part_imports_only_what_it_is_allowed_to():
    wrong = sorted(
        f"{a} -> {b}" for a, b in import_graph().edges
        if part_of(a) != part_of(b) and part_of(b) not in ALLOWED[part_of(a)]
    )
    assert not wrong, "imports against the layering (docs/architecture.md): " + "; ".join(wrong)


def test_subpackages_import_each_other_without_cycles():
    parts = nx.DiGraph((part_of(a), part_of(b)) for a, b in import_graph().edges if part_of(a) != part_of(b))
    assert not list(nx.simple_cycles(parts))


@pytest.mark.parametrize(("edge", "part"), [(("pneumonia.screening.gate", "ui.common"), "screening"),
                                            (("pneumonia.screening.predictor", "pneumonia.training.train"), "screening")])
def test_the_layering_check_catches_an_upward_import(edge, part):
    assert part_of(edge[0]) == part
    assert part_of(edge[1]) not in ALLOWED[part]


def test_scoring_never_imports_training_and_the_package_never_imports_streamlit():
    graph = import_graph()
    for start in ("pneumonia.screening.predictor", "pneumonia.screening.gate", "ui.screen", "ui.server"):
        reached = nx.descendants(graph, start)
        assert not any(part_of(m) == "training" for m in reached), start
    for path in (ROOT / "pneumonia").rglob("*.py"):
        assert "import streamlit" not in path.read_text(), path
