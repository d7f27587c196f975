"""``stream`` / ``blurry`` / ``recurring`` over any class-incremental scenario
(scenarios/task_agnostic.py), the split_fmnist presets as those wrappers, and a run of
naive on a stream over split_mnist."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from clbench.api.scenario import build_scenario
from clbench.config import compose
from clbench.types import TASK_AGNOSTIC
from scenarios.sources.mnist import write_layout

from conftest import small_run_overrides


def built(*overrides: str, data_root: Path = None, seed: int = 0):
    cfg = compose(list(overrides))
    return build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root, seed=seed)


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)

    def split(n: int):
        y = np.repeat(np.arange(10), n).astype(np.uint8)
        x = rng.integers(0, 255, size=(len(y), 28, 28), dtype=np.uint8)
        return x, y

    write_layout(tmp_path, split(20), split(4))
    return tmp_path


def test_stream_wraps_any_class_incremental_scenario_with_its_overrides():
    sc = built("scenario=stream", "scenario.base=split_digits", "scenario.repeats=3", "scenario.train_per_class=20")
    plain = built("scenario=split_digits", "scenario.train_per_class=20")
    assert sc.name == "split_digits_stream" and sc.kind == TASK_AGNOSTIC and sc.repeats == 3
    assert not sc.visibility.boundaries and sc.class_order == plain.class_order
    assert [len(e.train) for e in sc.experiences] == [len(e.train) for e in plain.experiences] == [40] * 5
    assert sc.description["base"] == "split_digits" and "subsampled" in sc.description["deviations"][0]
    b = built("scenario=blurry", "scenario.base=split_digits")
    assert b.name == "split_digits_blurry" and b.blurry == 0.1


def test_recurring_and_the_mnist_base(mnist_root):
    sc = built("scenario=recurring", "scenario.base=split_mnist", "scenario.shuffle_classes=false",
               f"data_root={mnist_root}", data_root=mnist_root)
    assert sc.name == "split_mnist_recurring" and sc.steps == [0, 1, 2, 1, 3, 4, 2]
    assert sc.experiences[0].classes == (0, 1) and sc.description["source"] == "mnist"


def test_the_split_fmnist_presets_are_the_wrappers_over_split_fmnist():
    for name, blurry in (("split_fmnist_stream", 0.0), ("split_fmnist_blurry", 0.1), ("split_fmnist_recurring", 0.0)):
        cfg = compose([f"scenario={name}"])
        assert cfg.scenario.base == "split_fmnist" and cfg.scenario.blurry == blurry
        assert cfg.scenario.train_per_class is None  # the keys the reference experiments set still exist


def test_a_base_that_is_not_class_incremental_or_a_setting_it_lacks_is_refused():
    with pytest.raises(ValueError, match=r"scenario.base='split_fmnist_ti' is task_incremental.*valid: .*split_mnist"):
        built("scenario=stream", "scenario.base=split_fmnist_ti")
    with pytest.raises(ValueError, match=r"scenario.base='split_digits' has no setting materialize; its settings: "):
        built("scenario=stream", "scenario.base=split_digits", "+scenario.base_options.materialize=true")
    with pytest.raises(ValueError, match="split_mnst"):
        built("scenario=stream", "scenario.base=split_mnst")


def test_naive_runs_on_a_stream_over_split_mnist(tmp_path, mnist_root):
    from clbench.cli.launch import run_from_config

    record, path = run_from_config(compose(small_run_overrides(
        tmp_path, "strategy=naive", "scenario=stream", "scenario.base=split_mnist", f"data_root={mnist_root}",
        train_per_class=10, test_per_class=4)))
    assert record.status == "complete" and record.scenario["name"] == "split_mnist_stream"
    assert path.parent.parent.name == "split_mnist_stream" and len(record.matrix) == 6
    assert record.extra["rows"][-1]["within_task"]["union"] is not None  # the official TAME metric, for every run
