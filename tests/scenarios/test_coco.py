"""MS-COCO 2014 (scenarios/sources/coco.py) from its native instances json: classes by name, the
scenario built from it; a missing copy says where it looked."""
import pytest

from clbench.errors import DataMissingError
from scenarios.multilabel import MultilabelConfig, build_multilabel
from scenarios.sources import coco

from fixtures.multilabel_layouts import write_coco


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
