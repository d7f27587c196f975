"""PASCAL VOC 2007 (scenarios/sources/voc.py) from a miniature of its native layout: only a 1 is
a positive; the scenario builds and runs under the protocol; a missing copy says where it
looked and how to get it."""
import pytest
import torch

from clbench import protocol
from clbench.errors import DataMissingError
from scenarios.multilabel import MultilabelConfig, build_multilabel
from scenarios.sources import voc

from fixtures.multilabel_layouts import write_voc
from probes import Probe


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
