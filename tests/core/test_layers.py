"""The shape of clbench/: no import circle (every import counts, lazy ones inside
functions too), and each module imports only from its own floor or below, so that a
newcomer finds the core in layers (clbench/__init__.py lists them)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: bottom to top; a module belongs to the first floor whose prefix it has
FLOORS = [
    ("ground", ["clbench", "clbench.types", "clbench.registry", "clbench.plugins", "clbench.errors", "clbench.fields",
                "clbench.paths", "clbench.rng", "clbench.settings", "clbench.progress"]),
    ("results", ["clbench.results"]),
    ("api", ["clbench.api"]),
    ("models", ["clbench.models"]),
    ("protocol", ["clbench.protocol"]),
    ("loggers", ["clbench.loggers"]),
    ("config", ["clbench.config"]),
    ("avalanche", ["clbench.avalanche"]),
    ("cli", ["clbench.cli", "clbench.__main__"]),
]


def _tool():
    spec = importlib.util.spec_from_file_location("import_cycles", ROOT / "scripts" / "import_cycles.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_cycles", module)
    spec.loader.exec_module(module)
    return module


def floor_of(module: str) -> int:
    best = None
    for level, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if module == p or (p != "clbench" and module.startswith(p + ".")):
                best = level
    if best is None:
        raise AssertionError(f"{module} belongs to no floor of tests/core/test_layers.py: add it where it belongs")
    return best


@pytest.fixture(scope="module")
def graph():
    return _tool().graph(ROOT / "clbench")


def test_no_import_circle(graph):
    assert _tool().cycles(graph) == []


def test_each_module_imports_only_its_floor_or_below(graph):
    upward = [f"{m} ({FLOORS[floor_of(m)][0]}) imports {t} ({FLOORS[floor_of(t)][0]})"
              for m, targets in graph.items() for t in targets if floor_of(t) > floor_of(m)]
    assert not upward, "\n".join(upward)


def test_the_results_floor_and_the_config_checks_import_no_torch():
    import subprocess

    code = ("import sys; import clbench.results.records, clbench.results.metrics, clbench.results.leaderboard, "
            "clbench.config.validate, clbench.config.finder; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
