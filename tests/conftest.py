"""Shared fixtures: quiet, offline, small and seeded."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("CLBENCH_CACHE", tempfile.mkdtemp(prefix="clbench-test-cache-"))  # never ~/.cache
torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and CI runs beside nothing else

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
