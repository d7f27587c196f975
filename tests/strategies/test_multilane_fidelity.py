"""MULTI-LANE against the official code, round 2 (issue 21):

- the loss is the official BCE: the mean over all B x C columns with every other task's
  column at logit 0 and target 0 (value and gradient), so the gradient is n_t / C of a
  mean over the current task's columns;
- the ViT gets raw [0, 1] pixels (the official ``--normalize_input`` is off), and any
  other normalisation is a recorded deviation;
- the transforms are torchvision's RandomResizedCrop + flip and Resize(256) +
  CenterCrop(224), taken per sample from each image's own box: a letterboxed canvas
  (VOC/COCO at native geometry) is cropped at full resolution with its aspect ratio,
  and where in the canvas the image sits, or how much padding surrounds it, changes
  nothing.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from clbench.models.backbones import BACKBONE_PRESETS
from clbench.types import MULTILABEL, VISIBILITY_BY_KIND, Batch, ExperienceInfo, ScenarioInfo
from strategies import multilane
from strategies.multilane import MultiLane, MultiLaneConfig, centre_crop, image_boxes, random_resized_crop_flip

PAD = -(2.0 ** -10)  # scenarios/sources/images.py's padding of a letterboxed canvas


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def info(dataset: str = "synthetic", shape=(1, 8, 8), classes: int = 6) -> ScenarioInfo:
    return ScenarioInfo("t", MULTILABEL, shape, classes, VISIBILITY_BY_KIND[MULTILABEL], num_experiences=3,
                        dataset=dataset)


def small(inf: ScenarioInfo = None, **overrides) -> MultiLane:
    cfg = dict(trunk="random", epochs=1, batch_size=8, lr=0.05, selectors=3, prompt_length=2, prompt_layers=2,
               small_width=2, augment="scenario", test_crop=1.0)
    cfg.update(overrides)
    return MultiLane(MultiLaneConfig(**cfg), inf or info(), BACKBONE_PRESETS["vit_small"], seed=0)


def ml_batch(n: int = 12, classes=(2, 3), C: int = 6, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, C, generator=g) < 0.5).float()
    known = torch.zeros(n, C, dtype=torch.bool)
    known[:, list(classes)] = True
    return Batch(x=torch.rand(n, 1, 8, 8, generator=g), y=y * known, known=known)


# -- the loss: the official reduction ------------------------------------------------------------
def official_bce(logits_lane: torch.Tensor, y: torch.Tensor, classes: list[int], C: int) -> torch.Tensor:
    """The official training loss, literally: the head's logits over all C classes with the
    non-current columns index_fill'ed with 0, the targets likewise, BCEWithLogitsLoss (mean)."""
    full = torch.zeros(len(y), C).index_copy(1, torch.tensor(classes), logits_lane)
    others = torch.tensor([c for c in range(C) if c not in classes])
    logits = full.index_fill(1, others, 0.0)
    target = y.index_fill(1, others, 0.0)
    return torch.nn.BCEWithLogitsLoss()(logits, target.float())


def test_multilabel_loss_is_the_official_bce_mean_over_all_columns():
    s = small()
    s.begin_experience(ExperienceInfo(0, (2, 3), None))
    lane = s.lanes[-1]
    batch = ml_batch()
    params = list(lane.parameters())

    def loss_and_grads(fn):
        s.optimizer.zero_grad(set_to_none=True)
        loss = fn()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in params]

    ours, g_ours = loss_and_grads(lambda: s.lane_loss(batch, lane))

    def official():
        logits = s.lane_logits(s.lane_features(s.train_inputs(batch), [lane])[:, 0], lane)
        return official_bce(logits, batch.y, lane.classes, 6)

    want, g_want = loss_and_grads(official)
    assert torch.allclose(ours, want, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-7, rtol=1e-5) for a, b in zip(g_ours, g_want))

    def mean_over_current():  # what the loss was before: a mean over the n_t current columns
        logits = s.lane_logits(s.lane_features(s.train_inputs(batch), [lane])[:, 0], lane)
        return F.binary_cross_entropy_with_logits(logits, batch.y[:, [2, 3]])

    _, g_mean = loss_and_grads(mean_over_current)
    assert all(torch.allclose(a, b * 2 / 6, atol=1e-7, rtol=1e-5) for a, b in zip(g_ours, g_mean))  # n_t / C


# -- input normalisation -------------------------------------------------------------------------
def test_vit_b16_gets_raw_pixels_as_the_official_default():
    inf = info(dataset="voc2007", shape=(3, 224, 224), classes=20)
    b16 = dataclasses.replace(BACKBONE_PRESETS["vit_b16"], weights="none")  # the preset, random weights
    s = MultiLane(MultiLaneConfig(trunk="random"), inf, b16, seed=0)
    assert BACKBONE_PRESETS["vit_b16"].normalize == "half" and s.backbone_config.normalize == "none"
    x = torch.rand(2, 3, 224, 224)
    assert torch.equal(s.backbone.adapter(x), x)  # raw [0, 1] pixels into the patch embedding
    assert not any("normalisation" in d for d in s.deviations())
    assert s.describe()["input_normalize"] == "none"
    on = MultiLane(MultiLaneConfig(trunk="random", input_normalize="imagenet"), inf, b16, seed=0)
    assert on.backbone_config.normalize == "imagenet"
    assert "ViT input normalisation 'imagenet' (paper: 'none', raw [0, 1] pixels: the official --normalize_input " \
           "is off)" in on.deviations()
    kept = MultiLane(MultiLaneConfig(trunk="random"), inf, dataclasses.replace(b16, normalize="imagenet"), seed=0)
    assert kept.backbone_config.normalize == "imagenet"  # a value the user set is kept, and recorded
    assert any(d.startswith("ViT input normalisation 'imagenet'") for d in kept.deviations())


def test_the_small_vit_s_normalisation_is_a_recorded_deviation():
    s = small(info(dataset="fmnist", shape=(1, 56, 56)))
    assert s.backbone_config.normalize == "half"
    assert any(d.startswith("ViT input normalisation 'half' (paper: 'none'") for d in s.deviations())
    assert not any("normalisation" in d for d in small(small_normalize="none").deviations())


# -- transforms: torchvision's, per sample, within each image's box -----------------------------------
def letterbox(img: torch.Tensor, side: int, top: int, left: int) -> torch.Tensor:
    canvas = torch.full((img.shape[0], side, side), PAD)
    canvas[:, top:top + img.shape[1], left:left + img.shape[2]] = img
    return canvas


def test_image_boxes_find_each_image_in_its_canvas():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 30, 40, generator=g), torch.rand(3, 50, 20, generator=g)
    a[:, 0, :] = 0.0  # black rows and columns are image, not padding
    x = torch.stack([letterbox(a, 64, 17, 12), letterbox(b, 64, 0, 44)])
    assert image_boxes(x, letterboxed=True).tolist() == [[17, 12, 30, 40], [0, 44, 50, 20]]
    assert image_boxes(x).tolist() == [[0, 0, 64, 64]] * 2  # not letterboxed: the whole input
    with pytest.raises(ValueError, match="no image pixel"):
        image_boxes(torch.full((1, 3, 4, 4), PAD), letterboxed=True)


def test_centre_crop_is_torchvision_resize_then_center_crop_of_the_native_image():
    from torchvision.transforms.v2 import functional as TF

    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 30, 40, generator=g), torch.rand(3, 44, 26, generator=g)]
    x = torch.stack([letterbox(images[0], 48, 9, 4), letterbox(images[1], 48, 2, 11)])
    got = centre_crop(x, 0.5, 16, image_boxes(x, letterboxed=True))  # paper: 0.875 = 224 / 256
    for img, out in zip(images, got):
        want = TF.center_crop(TF.resize(img, 32, interpolation=TF.InterpolationMode.BICUBIC, antialias=True), 16)
        assert torch.allclose(out, want.clamp(0, 1), atol=1e-6)
    assert got.min() >= 0  # never a padding pixel
    squashed = centre_crop(x, 1.0, 16)  # the canvas as one image: padding and all
    assert not torch.allclose(squashed, centre_crop(x, 1.0, 16, image_boxes(x, letterboxed=True)), atol=1e-2)


def test_random_resized_crop_stays_inside_each_box_and_follows_torchvision():
    from torchvision.transforms.v2 import functional as TF

    g = torch.Generator().manual_seed(2)
    img = torch.rand(3, 30, 40, generator=g)
    x = letterbox(img, 48, 9, 4).expand(64, -1, -1, -1).contiguous()
    boxes = image_boxes(x, letterboxed=True)
    out = random_resized_crop_flip(x, 16, torch.Generator().manual_seed(0), boxes=boxes)
    assert out.shape == (64, 3, 16, 16) and out.min() >= 0  # every crop inside the image, none in the padding
    # scale 1 and the image's own aspect ratio: the crop is the whole image, resized (bilinear, antialiased)
    whole = random_resized_crop_flip(x[:4], 16, torch.Generator().manual_seed(0), scale=(1.0, 1.0),
                                     ratio=(4 / 3, 4 / 3), boxes=boxes[:4])
    want = TF.resize(img, [16, 16], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    for out_ in whole:
        assert torch.allclose(out_, want, atol=1e-6) or torch.allclose(out_, want.flip(-1), atol=1e-6)
    # no draw fits (a square of the whole area in a 4:3 image): torchvision's fallback, the central
    # crop with the ratio clamped: 30 x 30 at left (40 - 30) // 2
    centre = random_resized_crop_flip(x[:4], 16, torch.Generator().manual_seed(0), scale=(1.0, 1.0),
                                      ratio=(1.0, 1.0), boxes=boxes[:4])
    want = TF.resize(img[:, :, 5:35], [16, 16], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    for out_ in centre:
        assert torch.allclose(out_, want, atol=1e-6) or torch.allclose(out_, want.flip(-1), atol=1e-6)


def test_area_and_aspect_of_the_crops_follow_scale_and_ratio():
    """Crop boxes drawn per sample: area / image area in [0.05, 1], aspect in [3/4, 4/3]."""
    boxes = torch.tensor([[5, 7, 300, 400]]).expand(4000, 4)
    captured = []
    real = multilane._per_box

    def spy(x, crops, fn):
        captured.append(crops.clone())
        return torch.zeros(len(x), 1, 2, 2)

    multilane._per_box = spy
    try:
        random_resized_crop_flip(torch.zeros(4000, 1, 1, 1), 2, torch.Generator().manual_seed(0), boxes=boxes)
    finally:
        multilane._per_box = real
    crops = captured[0].double()
    area, aspect = crops[:, 2] * crops[:, 3] / (300 * 400), crops[:, 3] / crops[:, 2]
    assert area.min() >= 0.049 and area.max() <= 1.0 and 0.74 <= aspect.min() and aspect.max() <= 1.35  # rounding
    assert (crops[:, 0] >= 5).all() and (crops[:, 0] + crops[:, 2] <= 305).all()
    assert (crops[:, 1] >= 7).all() and (crops[:, 1] + crops[:, 3] <= 407).all()
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)  # torchvision's own draws (the global RNG), the same image size
    tv = torch.tensor([[h * w / (300 * 400), w / h] for _, _, h, w in
                       (RandomResizedCrop.get_params(torch.zeros(1, 300, 400), (0.05, 1.0), (3 / 4, 4 / 3))
                        for _ in range(4000))], dtype=torch.float64)
    assert abs(float(area.mean()) - float(tv[:, 0].mean())) < 0.015  # ~0.42: big areas with extreme ratios retried
    assert abs(float(area.std()) - float(tv[:, 0].std())) < 0.015
    assert abs(float(aspect.mean()) - float(tv[:, 1].mean())) < 0.01


def test_predictions_do_not_depend_on_where_the_image_sits_in_its_canvas():
    """On a letterboxed data set (VOC, COCO at native geometry) the test transform reads the
    image alone: the same image in another place on a bigger canvas scores the same."""
    s = small(info(dataset="voc2007", shape=(3, 40, 40), classes=20), small_max_side=None, test_crop=0.875)
    s.begin_experience(ExperienceInfo(0, (0, 1, 2, 3), None))
    s.end_experience()
    s.eval()
    g = torch.Generator().manual_seed(3)
    imgs = [torch.rand(3, 21, 33, generator=g), torch.rand(3, 36, 18, generator=g)]
    a = torch.stack([letterbox(imgs[0], 40, 0, 0), letterbox(imgs[1], 40, 2, 20)])
    b = torch.stack([letterbox(imgs[0], 40, 19, 7), letterbox(imgs[1], 40, 4, 0)])
    assert torch.allclose(s.predict(a), s.predict(b), atol=1e-5)
    flat = small(info(dataset="synthetic", shape=(3, 40, 40), classes=20), small_max_side=None, test_crop=0.875)
    flat.load_state_dict(s.state_dict())
    flat.eval()
    assert not torch.allclose(flat.predict(a), flat.predict(b), atol=1e-3)  # whole-canvas crops: they differ
    assert s.describe()["letterboxed_inputs"] is True and flat.describe()["letterboxed_inputs"] is False


def test_training_inputs_never_read_the_padding():
    s = small(info(dataset="coco2014", shape=(3, 40, 40), classes=20), small_max_side=None, augment="paper")
    g = torch.Generator().manual_seed(4)
    x = torch.stack([letterbox(torch.rand(3, 12 + 3 * i, 30 - 2 * i, generator=g), 40, i, 2 * i) for i in range(6)])
    batch = Batch(x=x, y=torch.zeros(6, 20), known=torch.ones(6, 20, dtype=torch.bool))
    out = s.train_inputs(batch)
    assert out.shape == (6, 3, 40, 40) and out.min() >= 0
    s.config = dataclasses.replace(s.config, augment="scenario")
    assert s.train_inputs(batch).min() >= 0


def test_lane_loss_value_counts_the_other_columns_as_log_2():
    s = small()
    s.begin_experience(ExperienceInfo(0, (2, 3), None))
    lane = s.lanes[-1]
    with torch.no_grad():
        lane.head.weight.zero_()
        lane.head.bias.zero_()
        loss = s.lane_loss(ml_batch(), lane)
    assert float(loss) == pytest.approx(math.log(2.0), rel=1e-6)  # every one of the B x C columns at logit 0
