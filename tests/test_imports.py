"""No import cycles in pneumonia/ or ui/, counting imports inside functions too (they still tie modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pneumonia", "ui")


def module_name(path: Path) -> str:
    return path.parent.name if path.stem == "__init__" else f"{path.parent.name}.{path.stem}"


def import_graph() -> nx.DiGraph:
    """Module -> every project module it imports, at the top or inside a function."""
    modules = {module_name(p): p for package in PACKAGES for p in (ROOT / package).glob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph.add_edges_from((name, target) for target in targets if target in modules and target != name)
    return graph


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert graph.has_edge("pneumonia.gate_fit", "pneumonia.inference")
    assert graph.has_edge("pneumonia.train", "pneumonia.gate_fit")  # imported inside a function
    assert graph.has_edge("ui.server", "ui.common")


def test_no_module_imports_itself_through_others():
    cycles = sorted(nx.simple_cycles(import_graph()), key=len)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles[:5])


def test_scoring_never_imports_training_and_the_package_never_imports_streamlit():
    graph = import_graph()
    assert not nx.has_path(graph, "pneumonia.inference", "pneumonia.train")
    assert not nx.has_path(graph, "pneumonia.gate", "pneumonia.gate_fit")
    for path in (ROOT / "pneumonia").glob("*.py"):
        assert "import streamlit" not in path.read_text(), path.name
