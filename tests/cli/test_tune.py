"""``clbench tune`` (clbench.cli.tune): selection on a held-out split of the first experience's
training data only, checked by a spy on every test set; the chosen point wins on that split;
the experiment file records the choice and tuning: tuned-on-first-task."""
from __future__ import annotations

import pytest
import torch
import yaml
from synthetic import blob_scenario

from clbench import protocol
from clbench.api.data import TensorData
from clbench.cli.tune import (
    TuneError,
    experiment_text,
    grid,
    select,
    validation_scenario,
)
from clbench.models.backbones import BackboneConfig
from strategies.baselines import FinetuneConfig, Naive


class SpyData(TensorData):
    """A test set that counts every read of its samples, labels or size."""

    reads = 0

    def __getattribute__(self, name):
        if name in ("x", "y", "tensors", "__getitem__", "__len__", "subset"):
            SpyData.reads += 1
        return super().__getattribute__(name)

    def __len__(self):
        SpyData.reads += 1
        return super().__len__()

    def __getitem__(self, i):
        SpyData.reads += 1
        return super().__getitem__(i)


def spied(scenario):
    for e in scenario.experiences:
        e.test = SpyData(*e.test.tensors)
    return scenario


def test_tuning_never_reads_a_test_label(tmp_path):
    torch.manual_seed(0)  # whatever ran before, the same initial weights
    sc = spied(blob_scenario(n_exp=3, per_class=30))
    SpyData.reads = 0
    seen_points = []

    def make(point, info):
        seen_points.append(point)
        return Naive(FinetuneConfig(name="naive", epochs=5, batch_size=16, **point), info,
                     BackboneConfig(name="cnn28", width=4), seed=0)

    settings = protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu")
    chosen, scores = select(sc, make, grid({"lr": [1e-6, 0.05]}), settings, experiences=1, holdout=0.25)
    assert SpyData.reads == 0  # not one test sample, label or size was read
    assert seen_points == [{"lr": 1e-6}, {"lr": 0.05}]
    assert chosen == max(scores, key=lambda s: s["ACC"])["point"]
    assert scores[1]["ACC"] > scores[0]["ACC"]  # a learning rate that learns beats one that does not
    sc.experiences[0].test.y  # noqa: B018 - the control: a read is seen
    assert SpyData.reads > 0  # the spy sees a read (a control)
    with pytest.raises(TuneError, match="--experiences 4 is out of range"):
        validation_scenario(sc, 4, 0.2, 0)


def test_validation_scenario_holds_out_training_samples_only():
    sc = blob_scenario(n_exp=3, per_class=20)
    tune = validation_scenario(sc, 2, 0.25, seed=0)
    assert len(tune.experiences) == 2 and tune.steps == [0, 1]
    for exp, orig in zip(tune.experiences, sc.experiences):
        ids = lambda d: set(d.x[:, 0, 0, 0].round().long().tolist())
        assert ids(exp.test) <= ids(orig.train) and not ids(exp.test) & ids(exp.train)
        assert len(exp.test) == len(orig.train) // 4 and not ids(exp.test) & ids(orig.test)


def test_experiment_file_records_the_choice():
    cfg = {"strategy": {"name": "er", "lr": 0.01, "epochs": 2}, "scenario": {"name": "split_fmnist", "defaults": [],
           "train_per_class": 500}, "backbone": {"name": "cnn28", "width": 32}, "val_fraction": 0.1}
    text = experiment_text(cfg, {"strategy.lr": 0.01}, [{"point": {"strategy.lr": 0.001}, "ACC": 0.4},
                                                          {"point": {"strategy.lr": 0.01}, "ACC": 0.5}],
                           experiences=1, holdout=0.2, metric="ACC")
    assert text.startswith("# @package _global_") and "no test data was read" in text
    body = yaml.safe_load(text)
    assert body["tuning"] == "tuned-on-first-task" and body["strategy"] == {"lr": 0.01, "epochs": 2}
    assert {"override /strategy": "er"} in body["defaults"] and "defaults" not in body["scenario"]


def test_the_record_says_how_settings_were_chosen(tmp_path):
    from probes import Probe

    sc = blob_scenario(n_exp=2, per_class=10)
    base = {"results_dir": str(tmp_path), "progress": False, "device": "cpu"}
    record, _ = protocol.run(sc, Probe(info=sc.info), settings=protocol.RunSettings(**base))
    assert record.strategy["tuning"] == "ours"  # not a paper recipe, nothing said: ours
    told = protocol.RunSettings(**base, tuning="tuned-on-other-data")
    record, _ = protocol.run(sc, Probe(info=sc.info), settings=told)
    assert record.strategy["tuning"] == "tuned-on-other-data"
