"""Multi-label class-incremental family: sources, stream builder, evaluator and metrics."""
import json
import math
import warnings

import numpy as np
import pytest
import torch

import scenarios.multilabel  # noqa: F401  (registers the family until scenarios/__init__ imports it)
from clbench import protocol
from clbench.errors import DataMissingError
from clbench.protocol.evaluation import EVALUATORS
from clbench.protocol.multilabel import average_precisions, evaluate_multilabel, extra_metrics, f1_scores, mean_ap
from clbench.types import MULTILABEL
from scenarios.multilabel import MultilabelConfig, MultiLabelSource, build_multilabel
from scenarios.sources import MULTI_LABEL, SOURCES, coco, mlfmnist, voc
from strategies.baselines import classification_loss

from probes import Probe


def logit(p):
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p / (1 - p))


# -- metrics -------------------------------------------------------------------------
def test_torchmetrics_scores_a_class_without_positives_as_zero_so_we_skip_it():
    """Pins torchmetrics 1.9: no positive -> AP 0 (with a warning) and ``macro`` averages
    that 0 in. Our mean over seen classes must skip such a class instead."""
    from torchmetrics.functional.classification import binary_average_precision, multilabel_average_precision

    scores = torch.tensor([[0.9, 0.2, 0.3], [0.1, 0.8, 0.4], [0.6, 0.7, 0.2]])
    target = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert float(binary_average_precision(scores[:, 2], target[:, 2])) == 0.0
        assert float(multilabel_average_precision(scores, target, 3, average="macro")) == pytest.approx(2 / 3)
    ap = average_precisions(scores, target, [0, 1, 2])
    assert ap[2] is None and mean_ap(ap, [0, 1, 2]) == pytest.approx(1.0)


def test_map_hand_computed_skips_class_without_positive():
    scores = torch.tensor([[0.9, 0.2, 0.5], [0.8, 0.7, 0.1], [0.3, 0.6, 0.2], [0.1, 0.1, 0.9]])
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    ap = average_precisions(scores, labels, [0, 1, 2])
    # class 0: positives ranked 1st and 3rd -> (1 + 2/3) / 2; class 1: its positive ranked 1st
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2) and ap[1] == pytest.approx(1.0) and ap[2] is None
    assert mean_ap(ap, [0, 1, 2]) == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    assert mean_ap(ap, [2]) is None


def test_cf1_of1_hand_computed():
    probs = [[0.9, 0.2, 0.9], [0.85, 0.95, 0.1], [0.3, 0.6, 0.1], [0.1, 0.1, 0.1]]
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    out = f1_scores(logit(probs), labels, [0, 1, 2], threshold=0.8)
    # class 0: tp 1 fp 1 fn 1 -> F1 0.5; class 1: tp 1 -> F1 1; class 2 has no positive: not in CF1,
    # but its false positive counts in OF1: TP 2, FP 2, FN 1 -> 2*2 / (2*2 + 2 + 1)
    assert out["CF1"] == pytest.approx(0.75) and out["CP"] == pytest.approx(0.75) and out["CR"] == pytest.approx(0.75)
    assert out["OF1"] == pytest.approx(4 / 7) and out["OP"] == pytest.approx(0.5) and out["OR"] == pytest.approx(2 / 3)
    assert f1_scores(logit(probs), labels, [0, 1, 2], threshold=0.5)["CF1"] == pytest.approx((0.5 + 2 / 3) / 2)  # class 1 gains a false positive
    with pytest.raises(ValueError, match="threshold"):
        f1_scores(logit(probs), labels, [0], threshold=1.5)


def test_extra_metrics_average_over_steps_and_take_the_last():
    rows = [{"mAP": 0.9, "CF1": 0.5, "OF1": 0.6}, {"mAP": 0.7, "CF1": 0.4, "OF1": 0.3}]
    assert extra_metrics(rows) == pytest.approx({"avg_mAP": 0.8, "last_mAP": 0.7, "CF1": 0.4, "OF1": 0.3})
    assert EVALUATORS.get(MULTILABEL).extra_metrics(rows) == extra_metrics(rows)


# -- builder on a synthetic source -----------------------------------------------------
# 6 classes, B2-C2 -> experiences (0, 1), (2, 3), (4, 5). Pixel 0 of each image is its row id.
TRAIN = [[0, 1], [1, 2], [3], [4, 0], [5], [2, 5], []]
TEST = [[0], [2], [3, 4], [5], [1, 5], [0, 3], []]


def multi_hot(rows, C=6):
    out = torch.zeros(len(rows), C, dtype=torch.bool)
    for n, cs in enumerate(rows):
        out[n, cs] = True
    return out


def images(n, offset):
    x = torch.zeros(n, 1, 4, 4)
    x[:, 0, 0, 0] = torch.arange(n) + offset
    return x


def _synthetic(data_root, *, download=False):
    return MultiLabelSource("synth", images(len(TRAIN), 0), multi_hot(TRAIN), images(len(TEST), 100), multi_hot(TEST),
                            [f"c{i}" for i in range(6)], (1, 4, 4), "memory")


SOURCES.register("_synthetic", _synthetic, kind=MULTI_LABEL)


def synthetic_scenario(**kw):
    cfg = MultilabelConfig(name="synth", source="_synthetic", base_classes=2, classes_per_experience=2, **kw)
    return build_multilabel(cfg, data_root=None, seed=0)


def ids(data):
    return [int(v) for v in data.x[:, 0, 0, 0]]


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


def test_evaluator_rows_restrict_to_seen_classes_and_zero_the_future():
    s = synthetic_scenario()
    scores = torch.randn(len(TEST), 6, generator=torch.Generator().manual_seed(1))

    def predict(x, task):
        assert task is None
        return scores[x[:, 0, 0, 0].long() - 100]

    tests = [e.test for e in s.experiences]
    labels = multi_hot(TEST)
    row0 = evaluate_multilabel(lambda x, t: pytest.fail("row 0 sees no class: nothing to run"), s, 0, tests,
                               device=torch.device("cpu"), batch_size=2)
    assert row0.accuracy == [0.0, 0.0, 0.0] and row0.union_accuracy is None and row0.extra["mAP"] is None
    for step in range(1, 4):
        row = evaluate_multilabel(predict, s, step, tests, device=torch.device("cpu"), batch_size=2)
        rows = sorted(i - 100 for e in s.experiences[:step] for i in ids(e.test))
        for j, e in enumerate(s.experiences):
            if j >= step:
                assert row.accuracy[j] == 0.0
                continue
            want = average_precisions(scores[rows], labels[rows], e.classes)
            assert row.accuracy[j] == pytest.approx(mean_ap(want, e.classes) or 0.0)
        seen = sorted(c for e in s.experiences[:step] for c in e.classes)
        want_all = average_precisions(scores[rows], labels[rows], seen)
        assert row.extra["mAP"] == pytest.approx(mean_ap(want_all, seen))
        assert row.extra["skipped"] == sum(want_all[c] is None for c in seen)
        assert row.union_accuracy == pytest.approx(row.extra["mAP"])
        assert row.extra["threshold"] == 0.8 and row.extra["images"] == len(rows)
    # at step 1 classes 0, 1 are seen; class 1 has its only test positive (image 4) in the joint set
    assert row.extra["AP"][1] is not None


def test_threshold_comes_from_the_scenario_config():
    s = synthetic_scenario(threshold=0.6)
    assert s.description["threshold"] == 0.6
    row = evaluate_multilabel(lambda x, t: torch.zeros(len(x), 6), s, 1, [e.test for e in s.experiences],
                              device=torch.device("cpu"), batch_size=4)
    assert row.extra["threshold"] == 0.6 and row.extra["OF1"] == 0.0  # sigmoid(0) = 0.5 < 0.6: nothing predicted
    with pytest.raises(ValueError, match="threshold"):
        synthetic_scenario(threshold=1.0)


def test_protocol_gives_the_learner_only_known_masks_of_the_current_step(tmp_path):
    s = synthetic_scenario()

    class MaskProbe(Probe):
        def observe(self, batch):
            self.calls.append(batch.known.clone())
            return super().observe(batch)

    probe = MaskProbe(info=s.info)
    record, _ = protocol.run(s, probe, settings=protocol.RunSettings(results_dir=str(tmp_path), progress=False,
                                                                     device="cpu", val_fraction=0.0))
    masks = [c for c in probe.calls if isinstance(c, torch.Tensor)]
    assert {tuple(torch.nonzero(m[0]).flatten().tolist()) for m in masks} == {(0, 1), (2, 3), (4, 5)}
    assert len(record.matrix) == 4 and set(record.metrics) >= {"avg_mAP", "last_mAP", "CF1", "OF1"}
    assert record.metrics["avg_mAP"] == pytest.approx(np.mean(record.union_accuracy))


# -- native-format fixtures -------------------------------------------------------------
def write_jpeg(path, seed, size=(14, 10)):
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG")


def write_voc(root, labels):
    """labels: split -> {image id: {class: 1 | 0 | -1}} (unlisted classes: -1)."""
    base = root / "VOCdevkit" / "VOC2007"
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for split, images_ in labels.items():
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in images_))
        for name in voc.CLASS_NAMES:
            (main / f"{name}_{split}.txt").write_text(
                "".join(f"{i} {images_[i].get(name, -1):2d}\n" for i in images_))
        for k, i in enumerate(images_):
            write_jpeg(base / "JPEGImages" / f"{i}.jpg", k)
    return base


VOC_LABELS = {
    "trainval": {"000001": {"cat": 1, "dog": 0}, "000002": {"aeroplane": 1, "person": 1}, "000003": {"dog": 1},
                 "000006": {"sofa": 1, "chair": 0}},
    "test": {"000004": {"bicycle": 1}, "000005": {"cat": 1, "bird": -1, "tvmonitor": 1}},
}


def test_voc_reads_native_layout_only_ones_are_positive(tmp_path):
    write_voc(tmp_path, VOC_LABELS)
    src = voc.load(tmp_path, image_size=16)
    assert src.class_names == sorted(src.class_names) and src.class_names[0] == "aeroplane" and src.num_classes == 20
    col = {n: k for k, n in enumerate(src.class_names)}
    assert torch.nonzero(src.train_labels[0]).flatten().tolist() == [col["cat"]]  # dog is 0 (difficult): not positive
    assert torch.nonzero(src.train_labels[1]).flatten().tolist() == sorted([col["aeroplane"], col["person"]])
    assert torch.nonzero(src.test_labels[1]).flatten().tolist() == sorted([col["cat"], col["tvmonitor"]])
    x = src.train_images[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1


def test_voc_scenario_builds_from_the_fixture(tmp_path):
    write_voc(tmp_path, VOC_LABELS)
    cfg = MultilabelConfig(name="voc_b0c4", source="voc2007", base_classes=0, classes_per_experience=4, image_size=8)
    s = build_multilabel(cfg, data_root=tmp_path, seed=0)
    assert len(s.experiences) == 5 and s.input_shape == (3, 8, 8) and s.class_names[:4] == ["aeroplane", "bicycle", "bird", "boat"]
    first = s.experiences[0]  # aeroplane..boat: image 000002 (aeroplane) trains, 000004 (bicycle) tests
    assert len(first.train) == 1 and len(first.test) == 1
    x, y, known = first.train[0]
    assert x.shape == (3, 8, 8) and known.tolist() == [True] * 4 + [False] * 16
    assert y.tolist()[:4] == [1.0, 0.0, 0.0, 0.0] and y.sum() == 1  # person is unknown here, not a label
    assert sum(len(e.test) for e in s.experiences) == 2 and s.description["files"].endswith("VOC2007")
    # lazily decoded images go through the whole protocol (DataLoader path, validation subsets)
    record, _ = protocol.run(s, Probe(info=s.info), settings=protocol.RunSettings(
        results_dir=str(tmp_path / "runs"), progress=False, device="cpu"))
    assert record.status == "complete" and len(record.matrix) == 6 and record.extra["rows"][-1]["images"] == 2


def test_voc_missing_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataMissingError, match=r"VOC2007.*VOCtrainval_06-Nov-2007\.tar"):
        voc.load(tmp_path)
    base = write_voc(tmp_path, VOC_LABELS)
    (base / "JPEGImages" / "000003.jpg").unlink()
    with pytest.raises(DataMissingError, match="000003.jpg"):
        voc.load(tmp_path)


def write_coco(root):
    cats = [{"id": 1, "name": "zebra"}, {"id": 3, "name": "apple"}, {"id": 7, "name": "dog"}]
    splits = {
        "train2014": ({10: "a.jpg", 11: "b.jpg", 12: "c.jpg"}, [(10, 1), (10, 7), (11, 3), (11, 3)]),
        "val2014": ({20: "d.jpg", 21: "e.jpg"}, [(21, 1), (20, 7)]),
    }
    (root / "coco" / "annotations").mkdir(parents=True)
    for folder, (imgs, anns) in splits.items():
        for k, (image_id, name) in enumerate(imgs.items()):
            write_jpeg(root / "coco" / folder / name, image_id)
        data = {
            "images": [{"id": i, "file_name": n} for i, n in imgs.items()],
            "annotations": [{"id": k, "image_id": i, "category_id": c} for k, (i, c) in enumerate(anns)],
            "categories": cats,
        }
        (root / "coco" / "annotations" / f"instances_{folder}.json").write_text(json.dumps(data))


def test_coco_reads_instances_json_classes_by_name(tmp_path):
    write_coco(tmp_path)
    src = coco.load(tmp_path, image_size=12)
    assert src.class_names == ["apple", "dog", "zebra"]
    assert src.train_labels.tolist() == [[False, True, True], [True, False, False], [False, False, False]]
    assert src.test_labels.tolist() == [[False, True, False], [False, False, True]]
    assert src.test_images[1].shape == (3, 12, 12)
    cfg = MultilabelConfig(name="coco", source="coco2014", classes_per_experience=1, image_size=12)
    s = build_multilabel(cfg, data_root=tmp_path, seed=0)
    assert [len(e.train) for e in s.experiences] == [1, 1, 1] and [len(e.test) for e in s.experiences] == [0, 1, 1]


def test_coco_missing_says_where_it_looked(tmp_path):
    with pytest.raises(DataMissingError, match=r"instances_train2014\.json.*cocodataset\.org"):
        coco.load(tmp_path)


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


# -- mlfmnist ---------------------------------------------------------------------------
def test_mosaic_labels_are_exactly_the_classes_in_the_cells():
    items = torch.arange(10).repeat_interleave(3).float().view(-1, 1, 1, 1).expand(-1, 1, 28, 28)
    labels = torch.arange(10).repeat_interleave(3)
    x, y = mlfmnist.mosaics(items, labels, 400, np.random.default_rng(5))
    assert x.shape == (400, 1, 56, 56) and y.shape == (400, 10)
    for m in range(400):
        cells = {int(x[m, 0, r, c]) for r in (0, 28) for c in (0, 28)}
        assert cells == set(torch.nonzero(y[m]).flatten().tolist())
    counts = np.bincount(y.sum(1).numpy(), minlength=5)
    assert counts[0] == 0 and all(60 < counts[k] < 140 for k in (1, 2, 3, 4))  # k uniform on 1..4
    x2, y2 = mlfmnist.mosaics(items, labels, 400, np.random.default_rng(5))
    assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
@pytest.mark.parametrize("strategy", ["naive", "joint", "er"])
def test_baselines_run_end_to_end_on_mlfmnist(tmp_path, strategy):
    from clbench.cli.launch import run_from_config
    from clbench.config import compose

    record, path = run_from_config(compose([
        f"strategy={strategy}", "scenario=mlfmnist", "logger=none", "progress=false", "device=cpu",
        f"results_dir={tmp_path}", "scenario.train_mosaics=200", "scenario.test_mosaics=100", "strategy.epochs=1", "backbone.width=8",
    ]))
    assert record.status == "complete" and path.exists()
    assert len(record.matrix) == 6 and all(len(r) == 5 for r in record.matrix)
    assert all(record.matrix[i][j] == 0.0 for i in range(6) for j in range(i, 5))
    m = record.metrics
    for key in ("avg_mAP", "last_mAP", "CF1", "OF1"):
        assert m[key] is not None and 0.0 <= m[key] <= 1.0 and not math.isnan(m[key])
    assert m["last_mAP"] == pytest.approx(record.extra["rows"][-1]["mAP"])
    assert record.scenario["kind"] == MULTILABEL and record.scenario["experience_classes"][0] == [0, 1]
