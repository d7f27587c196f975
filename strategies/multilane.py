"""MULTI-LANE: per-task lanes over summarised patch tokens (De Min et al., CoLLAs 2024,
arXiv 2405.15633; official code github.com/tdemin16/multi-lane after commit 088cce2).

A frozen ViT computes its token stream ONCE per image; it never sees a prompt. Each task
owns a *lane* that runs alongside the stream:

- the lane starts as [lane-CLS, s_1 .. s_M]: the lane-CLS is the frozen ``cls_token``
  parameter (without position embedding, as the official code does), s_1..s_M are the
  task's M learnable selectors;
- in every block l, each selector summarises the frozen stream: with u = LN1_l(lane) and
  n = LN1_l(stream tokens) (all N tokens, CLS included, no gradient),
  summary_m = softmax_n(u_m . n_n / sqrt(D)) @ n (no learned projection);
- the block's frozen attention runs on [u_CLS, summaries] with the task's prefix prompts
  prepended to the keys and values (first ``prompt_layers`` blocks only);
- drop and replace: only the lane-CLS output is kept (residual, as in the block); the
  summaries are dropped and rebuilt from the selectors in the next block. The selector
  tokens themselves travel along the lane as in the official code: they take the
  residual with their LN1 output (the official attention returns the normalised
  selectors in place of the dropped summaries) and go through the frozen MLP sub-block
  with the lane-CLS;
- head: final LayerNorm on the lane-CLS, L2 normalisation, a linear head of which each
  lane keeps only its own classes' rows (the official shared head with per-lane masks).

At test time every seen lane runs batched on the one frozen stream; there is no task or
prompt selection. Per task, only that lane's selectors, prompts and head rows are trained
(a new Adam, weight decay 0, cosine schedule stepped per epoch); slot t starts as a copy
of slot t-1, and older lanes are frozen, so they stay bit-for-bit unchanged. Loss, with
the official reduction: multi-label, BCE-with-logits averaged over all B x C columns
(C: every class of the scenario), where the columns outside the current task hold
logit 0 and target 0 (a constant log 2, no gradient): the gradient is the current
task's known labels' BCE summed / (B x C), C / n_t smaller than a mean over the n_t
current columns (unknown labels are never negatives); single-label, cross-entropy over
the current task's logits (the official -inf fill of the others).

Parameters added per task: M x D + 2 x L_p x D x prompt layers + head rows (ViT-B/16,
D = 768: 168,960 with the COCO recipe, 84,480 with VOC's, plus (D + 1) per class). The
lane path costs, measured with ``torch.utils.flop_counter`` and recorded by
``describe()``, 8.8% of a frozen ViT-B forward per lane with M = 20 (the paper's
estimate (1 + M) / 197 = 10.7%): the summaries' queries, whose outputs would be dropped,
and the stream after the last block's LN1, which nothing reads, are never computed.

Inputs: raw [0, 1] pixels into the ViT (the official ``--normalize_input`` is off;
``input_normalize``), whatever the backbone preset normalises with. Transforms (the
official torchvision ones, per sample on batched tensors): training
RandomResizedCrop(224, scale 0.05-1, ratio 3/4-4/3, bilinear) + horizontal flip of the
raw inputs; test Resize(256) of the shorter side (bicubic) + CenterCrop(224). Each
image's own box is cropped: on VOC and COCO with ``scenario.geometry=native`` (their
presets' default) a batch holds every image at its native size, centred on a square
canvas whose padding is negative (``scenarios/sources/images.py``), and the box is the
bounding box of its pixels >= 0 (``image_boxes``), so the crop is taken from the
full-resolution image with its aspect ratio, as the official pipeline does; other
inputs are whole-image boxes.

Recipes (``RECIPES``) are chosen by the scenario's data set: COCO (and any multi-label
stream of a data set the paper did not use), VOC, CIFAR-100 (and any other single-label
stream). A config field left at None takes the recipe's value; a value that differs from
it is a recorded deviation.

The offline 28/56-px scenarios use a small ViT (``vit_small``: patch 4, 6 blocks, 3
heads; here width 96, inputs at most 32 px, mean = std = 0.5 normalisation) whose weights
come from supervised pretraining on scikit-learn's digits at 16 px (disjoint from the
stream; ~20 CPU-seconds, 92% held-out accuracy), its position embedding resampled to the
stream's patch grid, cached under ``$CLBENCH_CACHE/weights`` keyed by the settings and
the tensor layout; the record names the source.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from clbench.api.auxdata import AuxData
from clbench.api.strategy import Strategy, StrategyConfig, register_strategy
from clbench.api.view import LearnerView
from clbench.fields import setting
from clbench.models.backbones import BACKBONE_PRESETS, NORMALIZATIONS, BackboneConfig, create_backbone
from clbench.models.pretrain import TRUNK_CHOICES, pretrain_on_digits, resolve_trunk
from clbench.models.vit import VIT_B16_TIMM, ViTBackbone
from clbench.paths import weights_cache_dir
from clbench.types import CLASS_INCREMENTAL, MULTILABEL, Batch, ExperienceInfo, ScenarioInfo, StepStats


# -- the paper's recipes ----------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """One data set's settings in the paper (effective lr: the official code scales its
    ``--lr`` by batch / 256, e.g. COCO 0.03 x 128 / 256 = 0.015)."""

    epochs: int
    batch_size: int
    lr: float
    selectors: int  # M
    prompt_length: int  # L_p
    prompt_layers: int


RECIPES: dict[str, Recipe] = {
    "coco2014": Recipe(epochs=30, batch_size=128, lr=0.015, selectors=20, prompt_length=20, prompt_layers=5),
    "voc2007": Recipe(epochs=30, batch_size=256, lr=0.05, selectors=10, prompt_length=10, prompt_layers=5),
    "cifar100": Recipe(epochs=50, batch_size=1024, lr=0.04, selectors=20, prompt_length=20, prompt_layers=5),
}
#: config fields a recipe sets (None in the config = the recipe's value)
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))
#: data sets the paper used; 224-px-class inputs for which MULTI-LANE wants ViT-B/16
PAPER_DATASETS = ("coco2014", "voc2007", "cifar100")
AUGMENT_CHOICES = ("paper", "scenario")


def recipe_for(info: ScenarioInfo) -> str:
    """The recipe of ``info``'s data set; otherwise COCO's for a multi-label stream and
    CIFAR-100's for a single-label one (the paper's main setting of each family)."""
    if info.dataset in RECIPES:
        return info.dataset
    return "coco2014" if info.kind == MULTILABEL else "cifar100"


@dataclass
class MultiLaneConfig(StrategyConfig):
    """Recipe fields (epochs, batch_size, lr, selectors, prompt_length, prompt_layers)
    default to None = the paper's value for the scenario's data set (``RECIPES``).

    ``augment``: ``paper`` (random resized crop, scale 0.05-1, + horizontal flip of the
    raw inputs, the official training transform) or ``scenario`` (the scenario's own
    training augmentation). ``test_crop``: the centre crop's share of the shorter side
    at test (paper: resize 256, centre crop 224 = 0.875; 1.0 keeps the central square).
    ``l2_normalize``: L2 normalisation before the head (the paper's pre-head
    normalisation). ``input_normalize``: the normalisation of the ViT's inputs (paper:
    ``none``, raw [0, 1] pixels, the official ``--normalize_input`` being off; its
    ``imagenet`` when on), applied where ``backbone.normalize`` still has the preset's
    value (the small ViT has ``small_normalize``).

    Harness fields (not the paper's recipe): ``trunk`` says where the frozen ViT's
    weights come from: ``backbone`` (``backbone.weights``), ``digits`` (supervised
    pretraining on scikit-learn's digits at ``pretrain_side`` px (at most the side the
    ViT sees) for ``pretrain_epochs``,
    cached under ``cache_dir``; the position embedding is then resampled to the stream's
    patch grid), ``random`` (a random frozen ViT, not MULTI-LANE's premise; recorded) or
    ``auto`` (``backbone`` when weights are given, ``digits`` for ``vit_small``, else an
    error). ``small_*``: how the small ViT is built where the backbone config still has
    the ``vit_small`` preset's value for that field: embedding width / 6
    (``small_width``), input normalisation, and the largest input side it sees (inputs
    downsized inside the model; None keeps the scenario's size)."""

    epochs: Optional[int] = setting(None, "epochs per task (null: the recipe's)", ge=1)
    batch_size: Optional[int] = setting(None, "samples per training batch (null: the recipe's)", ge=1)
    lr: Optional[float] = setting(None, "Adam learning rate, cosine schedule (null: the recipe's)", gt=0)
    selectors: Optional[int] = setting(None, "M: selector tokens per lane (null: the recipe's)", ge=1)
    prompt_length: Optional[int] = setting(None, "L_p: prefix-prompt length (null: the recipe's)", ge=0)
    prompt_layers: Optional[int] = setting(None, "blocks with prefix prompts (null: the recipe's)", ge=0)
    weight_decay: float = setting(0.0, "Adam weight decay", ge=0)
    augment: str = setting("paper", "training augmentation: the paper's or the scenario's", choices=AUGMENT_CHOICES)
    test_crop: float = setting(0.875, "test: centre crop's share of the shorter side (224 of 256)", gt=0, le=1)
    l2_normalize: bool = setting(True, "L2-normalise the lane-CLS before the head")
    input_normalize: str = setting("none", "ViT input normalisation (paper: none, raw [0, 1] pixels)",
                                   choices=tuple(NORMALIZATIONS))
    trunk: str = setting("auto", "where the frozen ViT's weights come from", choices=TRUNK_CHOICES, recipe=False)
    pretrain_epochs: int = setting(10, "epochs of the offline digits pretraining (trunk=digits)", ge=1, recipe=False)
    pretrain_side: int = setting(16, "image side of the offline digits pretraining", ge=4, recipe=False)
    pretrain_seed: int = setting(0, "seed of the offline digits pretraining", ge=0, recipe=False)
    cache_dir: Optional[str] = setting(None, "where pretrained trunks are cached (default $CLBENCH_CACHE/weights)",
                                       recipe=False)
    small_width: int = setting(16, "vit_small: embedding width / 6", ge=1, recipe=False)
    small_normalize: str = setting("half", "vit_small: input normalisation", choices=tuple(NORMALIZATIONS),
                                   recipe=False)
    small_max_side: Optional[int] = setting(32, "vit_small: largest input side it sees (null: the scenario's)", ge=4,
                                            recipe=False)


def resolve_config(config: MultiLaneConfig, recipe: Recipe) -> MultiLaneConfig:
    """``config`` with every recipe field left at None set to ``recipe``'s value."""
    return dataclasses.replace(config, **{k: getattr(recipe, k) for k in RECIPE_FIELDS if getattr(config, k) is None})


# -- lanes ------------------------------------------------------------------------------
class Lane(nn.Module):
    """Everything one task owns: M selectors (M, D), prefix prompts for keys and values of
    the first P blocks (P, 2, L_p, heads, head_dim) and the head rows of its classes."""

    def __init__(self, classes: list[int], selectors: int, width: int, prompt_layers: int, prompt_length: int,
                 heads: int) -> None:
        super().__init__()
        self.classes = [int(c) for c in classes]
        self.selectors = nn.Parameter(torch.zeros(selectors, width))
        self.prompts = nn.Parameter(torch.zeros(prompt_layers, 2, prompt_length, heads, width // heads))
        self.head = nn.Linear(width, len(self.classes))


def orthogonal_rows(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """A (rows, cols) matrix with orthonormal rows (rows <= cols), as ``nn.init.orthogonal_``
    makes it, drawn from ``generator``."""
    a = torch.randn(cols, rows, generator=generator)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.t().contiguous()


def lane_attention(attn: nn.Module, z: torch.Tensor, prompts: Optional[torch.Tensor]) -> torch.Tensor:
    """The block's frozen attention for the lane-CLS query over the keys and values of
    ``z`` = [LN1(lane-CLS), summaries] (B, K, 1+M, D), with ``prompts`` (K, 2, L_p, H, hd)
    prepended to the keys and values. Returns the projected lane-CLS output (B, K, D); the
    summaries' outputs would be dropped, so their queries are never computed."""
    B, K, T, D = z.shape
    H, hd, A = attn.num_heads, attn.head_dim, attn.attn_dim
    w, b = attn.qkv.weight, attn.qkv.bias
    q = F.linear(z[:, :, 0], w[:A], None if b is None else b[:A]).view(B, K, H, hd)
    kv = F.linear(z, w[A:], None if b is None else b[A:]).view(B, K, T, 2, H, hd)
    k, v = kv.unbind(3)  # (B, K, T, H, hd)
    q, k = attn.q_norm(q), attn.k_norm(k)
    scores = torch.einsum("bkhd,bkthd->bkht", q, k) * attn.scale
    if prompts is not None and prompts.shape[2] > 0:  # prefix prompts on keys and values
        p_scores = torch.einsum("bkhd,klhd->bkhl", q, prompts[:, 0]) * attn.scale
        weights = torch.cat([p_scores, scores], dim=-1).softmax(dim=-1)
        L = prompts.shape[2]
        out = torch.einsum("bkhl,klhd->bkhd", weights[..., :L], prompts[:, 1]) + \
            torch.einsum("bkht,bkthd->bkhd", weights[..., L:], v)
    else:
        out = torch.einsum("bkht,bkthd->bkhd", scores.softmax(dim=-1), v)
    out = attn.norm(out.reshape(B, K, A))
    if getattr(attn, "gate", None) is not None:
        out = out * attn.gate(z[:, :, 0]).sigmoid()
    return attn.proj(out)


def lane_block(block: nn.Module, lane: torch.Tensor, stream_ln1: torch.Tensor, prompts: Optional[torch.Tensor],
               last: bool = False) -> torch.Tensor:
    """One frozen block on the lanes ``lane`` (B, K, 1+M, D) given the block's
    LN1-normalised frozen tokens ``stream_ln1`` (B, N, D). In the last block only the
    lane-CLS is carried on (nothing reads the selector tokens after it)."""
    D = lane.shape[-1]
    u = block.norm1(lane)
    sel = u[:, :, 1:]
    weights = torch.einsum("bkmd,bnd->bkmn", sel, stream_ln1) * D ** -0.5
    summaries = torch.einsum("bkmn,bnd->bkmd", weights.softmax(dim=-1), stream_ln1)
    out = lane_attention(block.attn, torch.cat([u[:, :, :1], summaries], dim=2), prompts)
    cls = lane[:, :, :1] + block.drop_path1(block.ls1(out.unsqueeze(2)))
    if last:
        return cls + block.drop_path2(block.ls2(block.mlp(block.norm2(cls))))
    lane = torch.cat([cls, lane[:, :, 1:] + block.drop_path1(block.ls1(sel))], dim=2)  # drop and replace
    return lane + block.drop_path2(block.ls2(block.mlp(block.norm2(lane))))


# -- transforms (the official train / test transforms, per sample on batched tensors) --------
#: data sets whose image files a scenario may deliver letterboxed (``scenario.geometry=native``,
#: ``scenarios/sources/images.py``): each image at its native size, centred on a square canvas
#: whose padding is negative (image pixels are in [0, 1])
LETTERBOX_DATASETS = ("voc2007", "coco2014")


def image_boxes(x: torch.Tensor, letterboxed: bool = False) -> torch.Tensor:
    """Each image's box ``(top, left, height, width)`` in ``x`` (B, C, H, W), a long tensor
    (B, 4) on the CPU: the whole input, or in a letterboxed canvas the bounding box of
    its pixels >= 0 (the padding is negative)."""
    B, _, H, W = x.shape
    if not letterboxed:
        return torch.tensor([[0, 0, H, W]]).expand(B, 4).clone()
    inside = (x >= 0).any(dim=1)  # (B, H, W)
    rows, cols = inside.any(dim=2).cpu(), inside.any(dim=1).cpu()  # (B, H), (B, W)
    if not bool(rows.any(dim=1).all()):
        raise ValueError("a letterboxed input holds no image pixel (every value is padding)")
    top, left = rows.int().argmax(dim=1), cols.int().argmax(dim=1)
    bottom, right = H - rows.flip(1).int().argmax(dim=1), W - cols.flip(1).int().argmax(dim=1)
    return torch.stack([top, left, bottom - top, right - left], dim=1).long()


def _resize(x: torch.Tensor, hw: tuple[int, int], mode: str) -> torch.Tensor:
    """Antialiased resize (as PIL's, which torchvision's transforms use on images); a
    bicubic result is clamped to [0, 1] as PIL's 8-bit output is."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    out = F.interpolate(x, size=tuple(hw), mode=mode, antialias=True, align_corners=False)
    return out.clamp(0.0, 1.0) if mode == "bicubic" else out


def _per_box(x: torch.Tensor, boxes: torch.Tensor, fn) -> torch.Tensor:
    """``fn(crops)`` on each sample's box ``(top, left, height, width)``, one call per
    group of samples with the same box (one call for a batch of equal boxes)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for b, key in enumerate(boxes.tolist()):
        groups.setdefault(tuple(key), []).append(b)
    if len(groups) == 1:  # one box for the whole batch (e.g. inputs that are not letterboxed): no copy
        (t, l, h, w), = groups
        return fn(x[:, :, t:t + h, l:l + w])
    out: Optional[torch.Tensor] = None
    for (t, l, h, w), rows in groups.items():
        index = torch.tensor(rows, device=x.device)
        res = fn(x.index_select(0, index)[:, :, t:t + h, l:l + w])
        if out is None:
            out = x.new_empty((len(x), *res.shape[1:]))
        out[index] = res
    return out


def random_resized_crop_flip(x: torch.Tensor, size: int, generator: torch.Generator,
                             scale: tuple[float, float] = (0.05, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3),
                             boxes: Optional[torch.Tensor] = None) -> torch.Tensor:
    """torchvision's RandomResizedCrop(size, scale, ratio) + RandomHorizontalFlip, one draw
    per sample from ``generator``, within each sample's image box (``image_boxes``; the
    whole input by default): up to 10 tries of an area and a log-uniform aspect ratio
    that fit, else the central crop with the aspect ratio clamped to ``ratio``; the
    crop's top-left uniform; bilinear antialiased resize (PIL's, as torchvision's)."""
    B = len(x)
    boxes = image_boxes(x) if boxes is None else boxes.cpu().long()
    H, W = boxes[:, 2:3].double(), boxes[:, 3:4].double()
    area = torch.empty(B, 10, dtype=torch.float64).uniform_(*scale, generator=generator) * H * W
    aspect = torch.exp(torch.empty(B, 10, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator))
    w, h = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()
    ok = (w > 0) & (h > 0) & (w <= W) & (h <= H)
    first = ok.int().argmax(dim=1, keepdim=True)
    found = ok.any(dim=1)
    H, W = H[:, 0], W[:, 0]
    in_ratio = W / H  # the fallback: torchvision's central crop, ratio clamped
    fw = torch.where(in_ratio > ratio[1], (H * ratio[1]).round(), W)
    fh = torch.where(in_ratio < ratio[0], (W / ratio[0]).round(), H)
    w = torch.where(found, w.gather(1, first)[:, 0], fw)
    h = torch.where(found, h.gather(1, first)[:, 0], fh)
    u = torch.rand(B, 2, generator=generator, dtype=torch.float64)
    top = torch.where(found, (u[:, 0] * (H - h + 1)).floor(), ((H - h) / 2).floor())
    left = torch.where(found, (u[:, 1] * (W - w + 1)).floor(), ((W - w) / 2).floor())
    crops = torch.stack([boxes[:, 0] + top.long(), boxes[:, 1] + left.long(), h.long(), w.long()], dim=1)
    out = _per_box(x, crops, lambda c: _resize(c, (size, size), "bilinear"))
    flip = (torch.rand(B, generator=generator) < 0.5).to(x.device).view(B, 1, 1, 1)
    return torch.where(flip, out.flip(-1), out)


def centre_crop(x: torch.Tensor, fraction: float, size: int, boxes: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The official test transform on each sample's image box (``image_boxes``; the whole
    input by default): Resize(int(size / fraction)) of the shorter side (bicubic,
    antialiased, aspect kept; paper: 256 for 224, fraction 0.875), then CenterCrop(size)."""
    boxes = image_boxes(x) if boxes is None else boxes.cpu().long()
    short = int(size / fraction + 1e-9)

    def resize_crop(c: torch.Tensor) -> torch.Tensor:
        h, w = c.shape[-2:]
        hw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        c = _resize(c, hw, "bicubic")
        top, left = int(round((hw[0] - size) / 2.0)), int(round((hw[1] - size) / 2.0))
        return c[:, :, top:top + size, left:left + size]

    return _per_box(x, boxes, resize_crop)


# -- the strategy ---------------------------------------------------------------------------
@register_strategy("multilane")
class MultiLane(Strategy):
    """MULTI-LANE on a frozen ViT: one lane per task, all lanes at test (module docstring)."""

    config_class = MultiLaneConfig
    kinds = frozenset({MULTILABEL, CLASS_INCREMENTAL})
    needs = frozenset({"boundaries"})
    paper_defaults = True
    paper_backbone = "vit_b16"
    uses_validation = False
    state_attrs = ("trunk_ready", "pretraining")

    @classmethod
    def preferred_backbone(cls, info: ScenarioInfo) -> Optional[str]:
        """ViT-B/16 (the paper's) for the paper's data sets and large inputs; the small ViT
        for the offline 28/56-px scenarios."""
        if info.dataset in PAPER_DATASETS or min(info.input_shape[-2:]) >= 96:
            return "vit_b16"
        return "vit_small"

    def __init__(self, config: MultiLaneConfig, info: ScenarioInfo, backbone: Optional[BackboneConfig] = None,
                 **kwargs: Any) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self.recipe_name = recipe_for(info)
        self.requested = config
        self.config = resolve_config(config, RECIPES[self.recipe_name])
        bb = small_vit_config(backbone or BACKBONE_PRESETS[self.preferred_backbone(info)], self.config, info)
        bb = input_normalized(bb, self.config)
        self.backbone_config = bb
        #: the scenario delivers letterboxed canvases (native geometry): transforms crop each image's box
        self.letterboxed = info.dataset in LETTERBOX_DATASETS
        self.trunk_kind = resolve_trunk(
            self.config.trunk, bb, method="MULTI-LANE", offline_backbone="vit_small",
            weights_hint="backbone.weights=hub (timm's Hugging Face cache) or "
                         "backbone.weights=/path/to/model.safetensors")
        if self.trunk_kind == "digits" and info.dataset == "digits":
            raise ValueError(f"strategy.trunk=digits pretrains on sklearn digits, which is the stream's own data set "
                             f"({info.name!r}); pass backbone.weights=<file> or strategy.trunk=random")
        with torch.random.fork_rng(devices=[]):  # the random init never touches the global RNG state
            torch.manual_seed(self.seed)
            self.backbone = create_backbone(bb, info.input_shape)
        if not isinstance(self.backbone, ViTBackbone):
            raise ValueError(f"MULTI-LANE needs a ViT backbone with block tokens; got backbone={bb.name!r}; "
                             f"valid choices: ['vit_b16', 'vit_small']")
        self.backbone.requires_grad_(False).eval()
        vit = self.backbone.vit
        self.width, self.heads, self.depth = vit.embed_dim, vit.blocks[0].attn.num_heads, len(vit.blocks)
        if self.config.prompt_layers > self.depth:
            raise ValueError(f"strategy.prompt_layers={self.config.prompt_layers} exceeds the backbone's "
                             f"{self.depth} blocks; valid: 0..{self.depth}")
        if getattr(vit, "cls_token", None) is None:
            raise ValueError("MULTI-LANE's lane-CLS is a copy of the ViT's class token; this ViT has none")
        self.side = bb.input_size or int(info.input_shape[-1])
        self.pretrain_side = min(self.config.pretrain_side, self.side)  # never more pixels than the stream shows
        self.trunk_ready = self.trunk_kind != "digits"
        self.pretraining: Optional[dict] = None
        self.lanes = nn.ModuleList()
        self.training_lane = False  # the last lane is being trained
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None

    # -- the model -------------------------------------------------------------------
    def train(self, mode: bool = True) -> "MultiLane":
        super().train(mode)
        self.backbone.eval()  # frozen: always in inference mode
        return self

    def lane_features(self, x: torch.Tensor, lanes: list[Lane]) -> torch.Tensor:
        """The final-LayerNormed lane-CLS of each lane in ``lanes`` for inputs ``x`` already
        at the backbone's side: (B, K, D). The frozen stream runs once for all lanes."""
        vit, P = self.backbone.vit, self.config.prompt_layers
        with torch.no_grad():
            stream = self.backbone.embed(x)
        B = stream.shape[0]
        selectors = torch.stack([lane.selectors for lane in lanes])  # (K, M, D)
        prompts = torch.stack([lane.prompts for lane in lanes]) if P else None  # (K, P, 2, L_p, H, hd)
        cls = vit.cls_token.reshape(1, 1, 1, -1).expand(B, len(lanes), 1, -1)
        lane = torch.cat([cls, selectors.unsqueeze(0).expand(B, -1, -1, -1)], dim=2)
        for i, block in enumerate(vit.blocks):
            last = i == self.depth - 1
            with torch.no_grad():
                stream_ln1 = block.norm1(stream)
                if not last:  # nothing reads the stream after the last block's LN1
                    stream = block(stream)
            lane = lane_block(block, lane, stream_ln1, prompts[:, i] if prompts is not None and i < P else None, last)
        return vit.norm(lane[:, :, 0])

    def lane_logits(self, features: torch.Tensor, lane: Lane) -> torch.Tensor:
        """Lane ``lane``'s logits over its own classes from its features (B, D)."""
        if self.config.l2_normalize:
            features = F.normalize(features, dim=-1)
        return lane.head(features)

    # -- hooks --------------------------------------------------------------------------
    def aux_requests(self) -> dict[str, str]:
        return {"pretraining": "sklearn_digits"} if not self.trunk_ready else {}

    def prepare(self, aux: Mapping[str, AuxData]) -> None:
        """Pretrain the small ViT on digits (or load it from the cache) where asked."""
        if self.trunk_ready:
            return
        if len(self.lanes):
            raise RuntimeError("the frozen ViT must be prepared before any lane is learnt")
        c, side, channels = self.config, self.pretrain_side, self.info.input_shape[0]
        bb = dataclasses.replace(self.backbone_config, weights="none", input_size=side)  # trained at `side` px
        settings = {"recipe": "multilane-digits-v2", "backbone": dataclasses.asdict(bb), "channels": channels,
                    "epochs": c.pretrain_epochs, "seed": c.pretrain_seed}
        path, self.pretraining = pretrain_on_digits(
            bb, (channels, side, side), aux["pretraining"].data, epochs=c.pretrain_epochs, seed=c.pretrain_seed,
            batch_size=32, device=self.device, cache_dir=weights_cache_dir(c.cache_dir), method="multilane",
            key_settings=settings, data_note=f"sklearn.datasets.load_digits (8x8, resized to {side}x{side})",
            meta={"side": side})
        state = torch.load(path, map_location="cpu", weights_only=True)
        load_resampled(self.backbone.trunk, state)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self.backbone.weights_source = f"pretrained by multilane on sklearn digits (file:{path} sha256:{digest})"
        self.pretraining["weights_source"] = self.backbone.weights_source
        self.trunk_ready = True

    def begin_experience(self, info: ExperienceInfo) -> None:
        """A new lane: selectors and prompts copied from the previous lane (the first one
        orthogonally initialised, as the official code), fresh head rows; earlier lanes
        frozen; a new Adam and cosine schedule over the new lane alone."""
        if not self.trunk_ready:
            raise RuntimeError("the small ViT is pretrained in prepare(aux): the protocol calls it before the stream "
                               "(by hand: s.prepare(clbench.api.auxdata.aux_for(s)))")
        seen = {c for lane in self.lanes for c in lane.classes}
        if seen & set(info.classes):
            raise ValueError(f"classes {sorted(seen & set(info.classes))} already have a lane; MULTI-LANE learns each "
                             f"class in one task (class-incremental)")
        for lane in self.lanes:
            lane.requires_grad_(False)
        lane = self._new_lane(list(info.classes))
        with torch.no_grad():
            if len(self.lanes):
                lane.selectors.copy_(self.lanes[-1].selectors)
                lane.prompts.copy_(self.lanes[-1].prompts)
            else:
                self._first_lane_init(lane)
            lane.head.weight.copy_(torch.randn(lane.head.weight.shape, generator=self.generator) * 0.02)
            lane.head.bias.zero_()
        self.lanes.append(lane.to(self.device))
        self._start_training()

    def train_experience(self, view: LearnerView) -> None:
        """``epochs`` passes over the experience; the cosine schedule steps per epoch."""
        if not self.training_lane:
            raise RuntimeError("MultiLane.train_experience needs begin_experience first")
        for _ in range(self.config.epochs):
            for batch in view.batches(self.config.batch_size):
                self.observe(batch)
            self.scheduler.step()

    def end_experience(self) -> None:
        self.lanes[-1].requires_grad_(False)
        self.training_lane = False
        self.optimizer = self.scheduler = None

    def observe(self, batch: Batch) -> StepStats:
        """One Adam step of the current lane on its own classes' loss."""
        if not self.training_lane:
            raise RuntimeError("MultiLane.observe outside an experience: begin_experience(info) first")
        lane = self.lanes[-1]
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.lane_loss(batch, lane)
        loss.backward()
        self.optimizer.step()
        return StepStats(loss=loss.detach(), n=len(batch))

    def train_inputs(self, batch: Batch) -> torch.Tensor:
        """The method's training transform of ``batch``: the official random resized crop +
        flip of the raw inputs, or (``augment=scenario``) the scenario's augmentation and
        the central square resized to the ViT's side."""
        if self.config.augment == "paper":
            raw = batch.raw
            return random_resized_crop_flip(raw, self.side, self.generator, boxes=image_boxes(raw, self.letterboxed))
        return centre_crop(batch.x, 1.0, self.side, image_boxes(batch.x, self.letterboxed))

    def lane_loss(self, batch: Batch, lane: Lane) -> torch.Tensor:
        """Multi-label: the official BCE, the mean over all B x C columns where every
        column outside ``lane`` holds logit 0 and target 0 (log 2 each, no gradient), so
        the gradient is the current task's BCE summed over its known labels / (B x C);
        unknown labels contribute nothing. Single-label: cross-entropy over the lane's
        logits (the official -inf fill of the others). On :meth:`train_inputs`."""
        logits = self.lane_logits(self.lane_features(self.train_inputs(batch), [lane])[:, 0], lane)
        cols = torch.as_tensor(lane.classes, device=logits.device)
        if batch.known is not None:
            target, known = batch.y[:, cols].float(), batch.known[:, cols].float()
            per_label = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            C = self.info.num_classes
            others = (C - len(lane.classes)) * math.log(2.0) / C  # the other tasks' columns: constant
            return (per_label * known).sum() / (len(batch) * C) + others
        lookup = torch.full((self.info.num_classes,), -1, dtype=torch.long, device=logits.device)
        lookup[cols] = torch.arange(len(cols), device=logits.device)
        local = lookup[batch.y]
        if bool((local < 0).any()):
            raise ValueError(f"labels {sorted(set(batch.y[local < 0].tolist()))} are not classes of the current task "
                             f"{lane.classes}; MULTI-LANE trains each lane on its own task's data")
        return F.cross_entropy(logits, local)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Every lane's logits in its own classes' columns (0 where no lane has the
        class), all lanes batched on one frozen stream."""
        scores = torch.zeros(len(x), self.info.num_classes, device=x.device)
        if not len(self.lanes):
            return scores
        x = centre_crop(x, self.config.test_crop, self.side, image_boxes(x, self.letterboxed))
        feats = self.lane_features(x, list(self.lanes))
        for k, lane in enumerate(self.lanes):
            scores[:, lane.classes] = self.lane_logits(feats[:, k], lane)
        return scores

    def metrics(self) -> dict[str, float]:
        return {"lanes": len(self.lanes)}

    # -- helpers ----------------------------------------------------------------------
    def _new_lane(self, classes: list[int]) -> Lane:
        c = self.config
        return Lane(classes, c.selectors, self.width, c.prompt_layers, c.prompt_length, self.heads)

    def _first_lane_init(self, lane: Lane) -> None:
        """Slot 0 of the official tensors: selectors (T, M, D) and, per prompt layer,
        prompts (2, T, L_p, H, hd), each orthogonally initialised as a whole."""
        T = max(1, self.info.num_experiences or 1)
        M, D = lane.selectors.shape
        lane.selectors.copy_(orthogonal_rows(T, M * D, self.generator)[0].view(M, D))
        for p in range(lane.prompts.shape[0]):
            shape = lane.prompts.shape[1:]  # (2, L_p, H, hd)
            per_slot = shape[1:].numel()
            if per_slot:
                rows = orthogonal_rows(2, T * per_slot, self.generator)
                lane.prompts[p].copy_(rows.view(2, T, per_slot)[:, 0].reshape(shape))

    def _start_training(self) -> None:
        lane = self.lanes[-1]
        lane.requires_grad_(True)
        self.training_lane = True
        self.optimizer = torch.optim.Adam(lane.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.config.epochs)

    def structure(self) -> dict:
        return {"lanes": [list(lane.classes) for lane in self.lanes], "training": self.training_lane}

    def build_structure(self, structure: dict) -> None:
        self.lanes = nn.ModuleList([self._new_lane(c) for c in structure["lanes"]]).to(self.device)
        self.lanes.requires_grad_(False)
        self.training_lane = False
        self.optimizer = self.scheduler = None
        if structure.get("training"):
            self._start_training()

    # -- the record ------------------------------------------------------------------------
    def lane_parameters(self) -> dict[str, int]:
        """Parameters one lane adds, by kind, excluding its head rows."""
        c, D = self.config, self.width
        return {"selectors": c.selectors * D, "prompts": 2 * c.prompt_length * D * c.prompt_layers}

    @torch.no_grad()
    def inference_cost(self, lanes: Optional[int] = None) -> dict:
        """Measured FLOPs (``torch.utils.flop_counter``) of one frozen forward of the ViT
        and of the lane path of k = 1..K lanes for one image, and their ratio."""
        from torch.utils.flop_counter import FlopCounterMode

        K = lanes or max(1, len(self.lanes))
        probe = [self.lanes[k] if k < len(self.lanes) else self._new_lane([0]).to(self.device) for k in range(K)]
        x = torch.zeros(1, *self.info.input_shape, device=self.device)
        x = centre_crop(x, 1.0, self.side)

        def count(fn) -> int:
            with FlopCounterMode(display=False) as counter:
                fn()
            return int(counter.get_total_flops())

        frozen = count(lambda: self.backbone(x))
        stream = count(lambda: self._stream_only(x))
        by_k = [count(lambda k=k: self._all_logits(x, probe[:k])) - stream for k in range(1, K + 1)]
        vit = self.backbone.vit
        tokens = vit.patch_embed.num_patches + 1
        return {
            "frozen_forward_flops": frozen, "lane_flops": by_k,
            "lane_fraction_per_lane": by_k[0] / frozen, "lane_fraction_by_lanes": [f / frozen for f in by_k],
            "paper_estimate_per_lane": (1 + self.config.selectors) / tokens, "stream_tokens": tokens,
        }

    def _stream_only(self, x: torch.Tensor) -> None:
        stream = self.backbone.embed(x)
        for i, block in enumerate(self.backbone.vit.blocks):
            block.norm1(stream)
            if i < self.depth - 1:
                stream = block(stream)

    def _all_logits(self, x: torch.Tensor, lanes: list[Lane]) -> None:
        feats = self.lane_features(x, lanes)
        for k, lane in enumerate(lanes):
            self.lane_logits(feats[:, k], lane)

    def describe(self) -> dict:
        c, lane = self.config, self.lane_parameters()
        return {
            "recipe": self.recipe_name,
            "recipe_values": dataclasses.asdict(RECIPES[self.recipe_name]),
            "trunk": self.trunk_kind,
            "trunk_weights": self.backbone.weights_source,
            "pretraining": self.pretraining,
            "width": self.width, "blocks": self.depth, "heads": self.heads,
            "lanes": [list(l.classes) for l in self.lanes],
            "params_per_lane": {**lane, "total_excluding_head": sum(lane.values()),
                                "head_rows_per_class": self.width + 1},
            "inference_cost": self.inference_cost(),
            "input_normalize": self.backbone_config.normalize,
            "letterboxed_inputs": self.letterboxed,
            "train_transform": ("RandomResizedCrop(scale 0.05-1, ratio 3/4-4/3, bilinear) + flip" if c.augment == "paper"
                                else "the scenario's, then the central square resized"),
            "test_transform": f"Resize(shorter side {int(self.side / c.test_crop + 1e-9)}, bicubic) + "
                              f"CenterCrop({self.side})",
            "loss": "BCE mean over B x all classes (other tasks' columns: logit 0, target 0)"
                    if self.info.multilabel else "cross-entropy over the current lane's classes",
        }

    def deviations(self) -> list[str]:
        c, recipe, paper = self.config, RECIPES[self.recipe_name], MultiLaneConfig()
        out = []
        if self.info.dataset not in RECIPES:
            out.append(f"data set {self.info.dataset!r} is not in the paper: the {self.recipe_name} recipe is used")
        for name in RECIPE_FIELDS:
            if getattr(c, name) != getattr(recipe, name):
                out.append(f"{name}={getattr(c, name)!r} (paper, {self.recipe_name} recipe: {getattr(recipe, name)!r})")
        for f in dataclasses.fields(paper):
            if f.name in RECIPE_FIELDS or f.name in ("name", "input_normalize") or f.metadata.get("recipe") is False:
                continue
            if getattr(c, f.name) != getattr(paper, f.name):
                out.append(f"{f.name}={getattr(c, f.name)!r} (paper: {getattr(paper, f.name)!r})")
        bb = self.backbone_config
        if bb.normalize != paper.input_normalize:  # whichever field set it (input_normalize, small_normalize, backbone)
            out.append(f"ViT input normalisation {bb.normalize!r} (paper: {paper.input_normalize!r}, raw [0, 1] pixels: "
                       f"the official --normalize_input is off)")
        if bb.name != self.paper_backbone:
            out.append(f"backbone={bb.name} (paper: {self.paper_backbone}, timm {VIT_B16_TIMM})")
        elif bb.input_size != 224:
            out.append(f"input {bb.input_size} px (paper: 224)")
        if self.trunk_kind == "digits":
            out.append(f"frozen ViT pretrained on sklearn digits ({self.pretrain_side} px, {c.pretrain_epochs} epochs; "
                       f"position embedding resampled to the stream's patch grid) (paper: ImageNet-21k pretrained, "
                       f"ImageNet-1k fine-tuned)")
        elif self.trunk_kind == "random":
            out.append("frozen ViT: random init, not pretrained (paper: ImageNet-21k/1k pretrained)")
        elif bb.name == self.paper_backbone and bb.weights != "hub":
            out.append(f"ViT weights {bb.weights} (paper: timm's augreg_in21k_ft_in1k)")
        return out


def small_vit_config(backbone: BackboneConfig, config: MultiLaneConfig, info: ScenarioInfo) -> BackboneConfig:
    """``backbone`` with the ``small_*`` settings applied to each field of a ``vit_small``
    config that still has the preset's value (a field the user set is kept)."""
    preset = BACKBONE_PRESETS["vit_small"]
    if backbone.name != "vit_small":
        return backbone
    changes: dict[str, Any] = {}
    if backbone.width == preset.width:
        changes["width"] = config.small_width
    if backbone.normalize == preset.normalize:
        changes["normalize"] = config.small_normalize
    if backbone.input_size == preset.input_size and config.small_max_side is not None \
            and max(info.input_shape[-2:]) > config.small_max_side:
        changes["input_size"] = config.small_max_side
    return dataclasses.replace(backbone, **changes)


def input_normalized(backbone: BackboneConfig, config: MultiLaneConfig) -> BackboneConfig:
    """``backbone`` with ``config.input_normalize`` where it is a ViT other than the small
    one and still has its preset's normalisation (a value the user set is kept)."""
    preset = BACKBONE_PRESETS.get(backbone.name)
    if backbone.name == "vit_small" or preset is None or backbone.normalize != preset.normalize:
        return backbone
    return dataclasses.replace(backbone, normalize=config.input_normalize)


def load_resampled(trunk: nn.Module, state: dict) -> None:
    """Load a timm ViT ``state`` into ``trunk``, resampling the patch-grid part of the
    position embedding (bicubic, the class token's entry kept) where the grids differ."""
    from timm.layers import resample_abs_pos_embed

    pos = state.get("pos_embed")
    if pos is not None and pos.shape != trunk.pos_embed.shape:
        prefix = trunk.num_prefix_tokens
        old = int(math.isqrt(pos.shape[1] - prefix))
        state = {**state, "pos_embed": resample_abs_pos_embed(
            pos, new_size=list(trunk.patch_embed.grid_size), old_size=[old, old], num_prefix_tokens=prefix)}
    trunk.load_state_dict(state)
