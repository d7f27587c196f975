"""VOC and COCO images at their native size (issue 21): ``geometry=native`` letterboxes each
image, unresized and centred, on a fixed canvas (so the protocol still batches images of
different sizes), a longer image is downscaled to fit with its aspect ratio, the named
scenarios default to it, and MULTI-LANE runs on it end to end; ``square`` is the old
resize at load."""
import pytest
import torch

from clbench import protocol
from clbench.models.backbones import BACKBONE_PRESETS
from scenarios.multilabel import MultilabelConfig, build_multilabel
from scenarios.sources import coco, voc
from scenarios.sources.images import PAD, LetterboxImageFiles

from fixtures.multilabel_layouts import write_coco, write_jpeg, write_voc

LABELS = {
    "trainval": {"000001": {"aeroplane": 1}, "000002": {"bicycle": 1, "person": 1}, "000003": {"bird": 1},
                 "000006": {"boat": 1}},
    "test": {"000004": {"aeroplane": 1}, "000005": {"bicycle": 1, "cat": 1}},
}
SIZES = {"000001": (14, 10), "000002": (9, 17), "000003": (20, 6), "000004": (12, 12), "000005": (7, 15)}  # (w, h)


def voc_tree(tmp_path):
    """The VOC fixture with images of different sizes (JPEG, as VOC's own)."""
    base = write_voc(tmp_path, LABELS)
    for k, (image_id, size) in enumerate(SIZES.items()):
        write_jpeg(base / "JPEGImages" / f"{image_id}.jpg", 100 + k, size=size)
    return base


def native_pixels(path) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms import functional as TF

    with Image.open(path) as im:
        return TF.to_tensor(im.convert("RGB"))


def test_native_geometry_keeps_each_image_unresized_and_centred(tmp_path):
    base = voc_tree(tmp_path)
    src = voc.load(tmp_path, geometry="native", max_side=24)
    assert isinstance(src.train_images, LetterboxImageFiles) and src.input_shape == (3, 24, 24)
    for n, image_id in enumerate(["000001", "000002", "000003"]):
        x = src.train_images[n]
        want = native_pixels(base / "JPEGImages" / f"{image_id}.jpg")
        h, w = want.shape[-2:]
        top, left = (24 - h) // 2, (24 - w) // 2
        assert x.shape == (3, 24, 24) and torch.equal(x[:, top:top + h, left:left + w], want)  # bit for bit
        outside = torch.ones(24, 24, dtype=torch.bool)
        outside[top:top + h, left:left + w] = False
        assert (x[:, outside] == PAD).all() and PAD < 0 <= float(want.min())


def test_a_longer_image_is_downscaled_to_the_canvas_with_its_aspect_ratio(tmp_path):
    voc_tree(tmp_path)
    src = voc.load(tmp_path, geometry="native", max_side=10)
    x = src.train_images[2]  # 20 x 6 (w x h) -> 10 x 3
    inside = (x >= 0).all(dim=0)
    assert inside.sum() == 30 and inside.any(dim=0).sum() == 10 and inside.any(dim=1).sum() == 3
    assert src.train_images[0].shape == (3, 10, 10)  # 14 x 10 -> 10 x 7


def test_square_geometry_is_the_old_resize_at_load(tmp_path):
    voc_tree(tmp_path)
    src = voc.load(tmp_path, image_size=16)  # the sources' default stays square
    assert not isinstance(src.train_images, LetterboxImageFiles) and src.train_images[2].shape == (3, 16, 16)
    assert float(src.train_images[2].min()) >= 0
    with pytest.raises(ValueError, match=r"geometry='round' is not a valid choice; valid choices: \['native', 'square'\]"):
        voc.load(tmp_path, geometry="round")


def test_named_scenarios_default_to_native_geometry_at_each_data_set_s_largest_side():
    from clbench.config import compose

    for name, side in (("voc_b0c4", 500), ("voc_b10c2", 500), ("coco_b0c10", 640), ("coco_b40c10", 640)):
        cfg = compose([f"scenario={name}", "logger=none"])
        assert (cfg.scenario.geometry, cfg.scenario.max_side) == ("native", side), name
    with pytest.raises(ValueError, match=r"scenario.geometry='round' is not a valid choice"):
        from clbench import fields
        fields.check(MultilabelConfig(geometry="round"), "scenario.")


def test_coco_native_geometry(tmp_path):
    write_coco(tmp_path)
    src = coco.load(tmp_path, geometry="native", max_side=20)
    assert src.input_shape == (3, 20, 20) and (src.test_images[1] >= 0).all(dim=0).sum() == 14 * 10
    assert src.train_images.fingerprint == "coco2014/train2014@native20px"


def test_images_of_different_sizes_batch_through_the_protocol_and_multilane(tmp_path):
    """The scenario built at native geometry: batches of differently sized images go through
    the protocol's DataLoader path, and MULTI-LANE crops each one from its own box."""
    from strategies.multilane import MultiLane, MultiLaneConfig

    voc_tree(tmp_path)
    cfg = MultilabelConfig(name="voc_b0c4", source="voc2007", base_classes=0, classes_per_experience=4,
                           geometry="native", max_side=24)
    sc = build_multilabel(cfg, data_root=tmp_path, seed=0)
    assert sc.input_shape == (3, 24, 24) and sc.description["geometry"] == "native: letterboxed on a 24x24 canvas"
    x, y, known = sc.experiences[0].train[1]  # 000002 (bicycle): 9 x 17
    assert x.shape == (3, 24, 24) and (x >= 0).all(dim=0).sum() == 9 * 17
    s = MultiLane(MultiLaneConfig(trunk="random", epochs=1, batch_size=4, small_width=2, selectors=2, prompt_length=1,
                                  prompt_layers=1, small_max_side=None),
                  sc.info_for(0.0), BACKBONE_PRESETS["vit_small"], seed=0)
    record, _ = protocol.run(sc, s, settings=protocol.RunSettings(results_dir=str(tmp_path / "runs"), progress=False,
                                                                  device="cpu", val_fraction=0.0))
    assert record.status == "complete" and record.strategy["details"]["letterboxed_inputs"] is True
    assert record.scenario["description"]["geometry"].startswith("native")
