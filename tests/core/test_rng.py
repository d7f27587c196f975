"""Seeding (clbench.rng): the global generators' states round-trip through a weights-only
checkpoint; through the CLI's code path on real Fashion-MNIST, the same seed gives the same
matrix and another seed another class order."""
from __future__ import annotations

import pytest
import torch

from clbench import rng
from clbench.cli.launch import run_from_config
from clbench.config import compose

from conftest import small_run_overrides


@pytest.mark.usefixtures("fmnist_available")
def test_checkpoint_rng_states_round_trip_through_weights_only(tmp_path):
    import random

    import numpy as np

    state = rng.state()
    torch.save(state, tmp_path / "rng.pt")
    a = (torch.rand(3), np.random.rand(3), random.random())
    rng.set_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def run(tmp_path, *overrides, **kw):
    return run_from_config(compose(small_run_overrides(tmp_path, *overrides, **kw)))


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_same_seed_same_matrix_other_seed_other_order(tmp_path):
    a, _ = run(tmp_path, "strategy=naive", "seed=3")
    b, _ = run(tmp_path, "strategy=naive", "seed=3")
    c, _ = run(tmp_path, "strategy=naive", "seed=4")
    assert a.matrix == b.matrix and a.scenario["class_order"] == b.scenario["class_order"]
    assert c.scenario["class_order"] != a.scenario["class_order"]
