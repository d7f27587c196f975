"""The multi-label family (scenarios/multilabel.py): each training set knows only its step's
classes (never negatives of the others), test sets are partitioned by their first class, the
threshold comes from the scenario config, the VOC and COCO presets compose, train and test
limits subsample with the seed and are recorded."""
import pytest
import torch

import scenarios.multilabel  # noqa: F401  (registers the family until scenarios/__init__ imports it)
from clbench.errors import DataMissingError
from clbench.protocol.multilabel import evaluate_multilabel
from clbench.types import MULTILABEL
from scenarios.multilabel import MultilabelConfig, build_multilabel
from strategies.baselines import classification_loss

from fixtures.multilabel_layouts import write_coco
from synthetic import TEST, TRAIN, ids, multi_hot, synthetic_scenario


def test_training_sets_know_only_their_step_and_never_hold_other_negatives():
    s = synthetic_scenario()
    assert s.kind == MULTILABEL and [e.classes for e in s.experiences] == [(0, 1), (2, 3), (4, 5)]
    assert [ids(e.train) for e in s.experiences] == [[0, 1, 3], [1, 2, 5], [3, 4, 5]]
    for e in s.experiences:
        mask = torch.zeros(6, dtype=torch.bool)
        mask[list(e.classes)] = True
        assert (e.train.known == mask).all()  # other classes unknown, never negatives
        assert not e.train.y[:, ~mask].any()  # nor positives from other steps
        for row, n in zip(e.train.y.bool(), ids(e.train)):
            assert set(torch.nonzero(row).flatten().tolist()) == set(TRAIN[n]) & set(e.classes)
    # BCE over known labels: no gradient reaches the logits of unknown classes
    e = s.experiences[1]
    logits = torch.randn(len(e.train), 6, requires_grad=True)
    from clbench.types import Batch

    classification_loss(logits, Batch(e.train.x, e.train.y, known=e.train.known)).backward()
    assert (logits.grad[:, [0, 1, 4, 5]] == 0).all() and (logits.grad[:, [2, 3]] != 0).all()


def test_test_sets_partition_by_first_class_so_joint_sets_need_no_dedup():
    s = synthetic_scenario()
    # first class in stream order: image 0 -> exp 0, 1 -> 1, 2 -> 1, 3 -> 2, 4 -> 0, 5 -> 0; 6 has no label
    assert [ids(e.test) for e in s.experiences] == [[100, 104, 105], [101, 102], [103]]
    for step in (1, 2, 3):
        seen = {c for e in s.experiences[:step] for c in e.classes}
        joint = sorted(i for e in s.experiences[:step] for i in ids(e.test))
        assert joint == sorted(100 + n for n, cs in enumerate(TEST) if set(cs) & seen)
    assert all(e.test.known.all() for e in s.experiences)
    assert torch.equal(s.experiences[0].test.y.bool(), multi_hot([TEST[0], TEST[4], TEST[5]]))


def test_threshold_comes_from_the_scenario_config():
    s = synthetic_scenario(threshold=0.6)
    assert s.description["threshold"] == 0.6
    row = evaluate_multilabel(lambda x, t: torch.zeros(len(x), 6), s, 1, [e.test for e in s.experiences],
                              device=torch.device("cpu"), batch_size=4)
    assert row.extra["threshold"] == 0.6 and row.extra["OF1"] == 0.0  # sigmoid(0) = 0.5 < 0.6: nothing predicted
    with pytest.raises(ValueError, match="threshold"):
        synthetic_scenario(threshold=1.0)


@pytest.mark.parametrize("name, source, split", [
    ("voc_b0c4", "voc2007", (0, 4)), ("voc_b10c2", "voc2007", (10, 2)),
    ("coco_b0c10", "coco2014", (0, 10)), ("coco_b40c10", "coco2014", (40, 10)),
])
def test_named_real_data_presets_compose_and_say_where_data_is_missing(tmp_path, name, source, split):
    from omegaconf import OmegaConf

    from clbench.config import compose
    from clbench.api.scenario import build_scenario

    cfg = compose([f"scenario={name}", "logger=none", f"data_root={tmp_path}"])
    assert cfg.scenario.kind == MULTILABEL and cfg.scenario.source == source and cfg.backbone.name == "resnet18"
    assert (cfg.scenario.base_classes, cfg.scenario.classes_per_experience) == split
    with pytest.raises(DataMissingError, match=str(tmp_path)):
        build_scenario(OmegaConf.to_object(cfg.scenario), data_root=tmp_path, seed=0)


def test_train_and_test_limits_subsample_with_the_seed_and_are_recorded(tmp_path):
    write_coco(tmp_path)
    cfg = MultilabelConfig(name="coco", source="coco2014", classes_per_experience=1, image_size=4, train_limit=2, test_limit=1)
    a, b = (build_multilabel(cfg, data_root=tmp_path, seed=7) for _ in range(2))
    assert sum(len(e.test) for e in a.experiences) <= 1
    assert [e.train.indices.tolist() for e in a.experiences] == [e.train.indices.tolist() for e in b.experiences]
    assert a.description["deviations"] == ["subsampled: 2 train / 1 test images"]
