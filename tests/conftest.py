"""Shared fixtures: quiet, offline, small and seeded."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("CLBENCH_CACHE", tempfile.mkdtemp(prefix="clbench-test-cache-"))  # never ~/.cache
torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and CI runs beside nothing else

# tests/strategies/ and tests/scenarios/ have no __init__.py and tests/ is on sys.path (pyproject.toml:
# pythonpath), so without the repository root on sys.path as well, `import strategies` would find
# tests/strategies/ as a namespace package before an editable install's finder is asked. Appended,
# not prepended: an installed copy (tox) still comes first.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from clbench.models.backbones import BackboneConfig  # noqa: E402

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fmnist_available() -> None:
    """Real Fashion-MNIST (Debian's dataset-fashion-mnist). CI installs it, so there a
    missing copy is a failure, not a skip."""
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        if os.environ.get("CI"):
            pytest.fail(f"Fashion-MNIST missing from {FMNIST_DIR}: .ci/run must install dataset-fashion-mnist")
        pytest.skip(f"Fashion-MNIST not installed at {FMNIST_DIR} (apt-get install dataset-fashion-mnist)")


def small_run_overrides(tmp_path: Path, *extra: str, train_per_class: int = 60, test_per_class: int = 30) -> list[str]:
    """Overrides for a quick, quiet run writing under ``tmp_path``."""
    return [
        "logger=none", "progress=false", f"results_dir={tmp_path}", "device=cpu",
        f"scenario.train_per_class={train_per_class}", f"scenario.test_per_class={test_per_class}",
        "strategy.epochs=1", *extra,
    ]


# -- tiny Avalanche benchmarks: the bridge, its benchmarks as scenarios, its strategies as baselines

CLASSES = [0, 1, 2, 3]  # two experiences of two Fashion-MNIST classes
TINY = BackboneConfig(name="cnn28", width=8)  # the runs check wiring, not accuracy: keep them cheap


@pytest.fixture(scope="module")
def fmnist(fmnist_available):
    from scenarios.sources import load_source

    return load_source("fmnist", None)


@pytest.fixture(scope="module")
def benchmarks(fmnist):
    """Tiny Avalanche benchmarks (nc_benchmark over local tensors): class- and task-incremental."""
    import scenarios.avalanche_benchmarks as avb
    from clbench.types import CLASS_INCREMENTAL, TASK_INCREMENTAL

    common = dict(n_experiences=2, classes=CLASSES, train_per_class=40, test_per_class=20, seed=0, source=fmnist)
    return {
        CLASS_INCREMENTAL: avb.fmnist_tensors(None, task_labels=False, **common),
        TASK_INCREMENTAL: avb.fmnist_tensors(None, task_labels=True, **common),
    }
