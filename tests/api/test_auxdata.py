"""Data reaches a strategy only through the protocol (clbench.api.auxdata): no strategy module
imports the scenarios or reaches for a data root, and a Strategy is built without one."""
from __future__ import annotations

import ast
from pathlib import Path

from clbench.api.strategy import Strategy

REPO = Path(__file__).resolve().parents[2]


def test_strategies_never_import_scenarios_nor_take_a_data_root():
    for path in sorted((REPO / "strategies").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("scenarios"), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("scenarios") for a in node.names), path.name
            elif isinstance(node, ast.Attribute):
                assert node.attr != "data_root", f"{path.name} reaches for a data root"
    import inspect

    assert "data_root" not in inspect.signature(Strategy.__init__).parameters
