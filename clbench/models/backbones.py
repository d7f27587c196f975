"""Backbones: the registry (``register_backbone``: a builder and the preset that
``backbone=<name>`` selects), a small CNN for 28x28 inputs and torchvision ResNets
(the ViTs are in ``clbench.models.vit``).

A backbone maps images to a feature vector (``out_features`` wide, no classifier).
Its weights come from torchvision's weight enums (network or a warm torch hub cache),
a local file, or nowhere (``weights=none``, a random init that is recorded as such).
Input adaptation (channel repeat, resize, normalisation) is part of the module, so
datasets stay raw tensors in [0, 1].
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from clbench.errors import UserError
from clbench.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: input normalisations a backbone config may name: imagenet (torchvision), half (mean =
#: std = 0.5, timm's augreg ViTs), none
NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "half": ((0.5,) * 3, (0.5,) * 3), "none": None}


@dataclass
class BackboneConfig:
    """``weights``: ``none``, a torchvision enum member (``IMAGENET1K_V1``) or a file path.
    ``input_size``: resize inputs to this side (None keeps them). ``normalize``:
    ``imagenet``, ``half`` or ``none``. ``width``: base channel count (small CNN), or
    embedding width / 6 (``vit_small``: 32 gives ViT-Tiny's 192)."""

    name: str = "cnn28"
    weights: str = "none"
    input_size: Optional[int] = None
    normalize: str = "none"
    width: int = 32


class BackboneWeightsError(UserError, RuntimeError):
    """Weights that were asked for could not be had; never silently replaced."""


class InputAdapter(nn.Module):
    """Repeat grey channels, resize and normalise, inside the model."""

    def __init__(self, channels: int, input_size: Optional[int], normalize: str) -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalize {normalize!r}; valid choices: {sorted(NORMALIZATIONS)}")
        self.channels, self.input_size = channels, input_size
        mean, std = NORMALIZATIONS[normalize] or ((0.0,) * channels, (1.0,) * channels)
        self.register_buffer("mean", torch.tensor(mean[:channels]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std[:channels]).view(1, -1, 1, 1), persistent=False)
        self.identity = normalize == "none" and input_size is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.identity:
            return x
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std


class Backbone(nn.Module):
    """``adapter`` then ``trunk``; ``out_features`` wide; ``weights_source`` says where
    the weights came from (recorded in every run)."""

    def __init__(self, adapter: InputAdapter, trunk: nn.Module, out_features: int, weights_source: str) -> None:
        super().__init__()
        self.adapter, self.trunk = adapter, trunk
        self.out_features, self.weights_source = out_features, weights_source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.adapter(x))


class SmallCNN(nn.Sequential):
    """Three conv-BN-ReLU blocks, a 3x3 adaptive pool that keeps coarse layout (which
    tells a coat from a pullover; a global pool does not) and a linear projection (no
    activation after it, so no unit can die when a new experience's first gradients are
    large): any input size in, ``4 * width`` features out."""

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        def block(i: int, o: int, pool: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        super().__init__(
            *block(in_channels, width, True), *block(width, 2 * width, True), *block(2 * width, 4 * width, False),
            nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(4 * width * 9, 4 * width),
        )
        self.out_features = 4 * width


BackboneBuilder = Callable[[BackboneConfig, tuple[int, ...]], Backbone]
BACKBONES: Registry[BackboneBuilder] = Registry("backbone")


def create_backbone(config: BackboneConfig, input_shape: tuple[int, ...]) -> Backbone:
    """Build the backbone named by ``config.name`` for inputs of ``input_shape`` (C, H, W)."""
    return BACKBONES.get(config.name)(config, tuple(input_shape))


def load_weights_file(path: str) -> tuple[dict, str]:
    """A state dict from a local file (``weights_only``), and a source string with its hash."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise BackboneWeightsError(f"weights file {str(p)!r} does not exist; pass backbone.weights=none for a random init")
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state, f"file:{p} sha256:{digest}"


def _small_cnn(config: BackboneConfig, input_shape: tuple[int, ...]) -> Backbone:
    trunk = SmallCNN(in_channels=input_shape[0], width=config.width)
    source = "none (random init)"
    if config.weights != "none":
        state, source = load_weights_file(config.weights)
        trunk.load_state_dict(state)
    return Backbone(InputAdapter(input_shape[0], config.input_size, config.normalize), trunk, trunk.out_features, source)


def _torchvision_resnet(arch: str, enum_name: str) -> BackboneBuilder:
    def build(config: BackboneConfig, input_shape: tuple[int, ...]) -> Backbone:
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None)
        width = model.fc.in_features
        model.fc = nn.Identity()
        if config.weights == "none":
            source = "none (random init)"
        elif Path(config.weights).suffix in (".pt", ".pth", ".bin") or "/" in config.weights:
            state, source = load_weights_file(config.weights)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            model.load_state_dict(state)
        else:
            state, source = _torchvision_state(enum_name, config.weights)
            model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
        return Backbone(InputAdapter(3, config.input_size, config.normalize), model, width, source)

    return build


def _torchvision_state(enum_name: str, member: str) -> tuple[dict, str]:
    import torchvision

    enum = getattr(torchvision.models, enum_name)
    valid = [m.name for m in enum]
    if member not in valid:
        raise BackboneWeightsError(
            f"unknown weights {member!r} for {enum_name}; valid choices: {valid}, 'none', or a file path"
        )
    weights = enum[member]
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # no network and no warm cache
        hub = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise BackboneWeightsError(
            f"could not get torchvision weights {enum_name}.{member} from {weights.url} ({type(err).__name__}: {err}). "
            f"Offline, place that file at {hub} or pass backbone.weights=/path/to/weights.pth"
        ) from err
    return state, f"torchvision:{enum_name}.{member}"


#: Presets offered as ``backbone=<name>`` (config group ``backbone``), by :func:`register_backbone`.
BACKBONE_PRESETS: dict[str, BackboneConfig] = {}


def register_backbone(name: str, builder: BackboneBuilder, preset: Optional[BackboneConfig] = None) -> None:
    """Offer a backbone to every strategy: ``builder(config, input_shape)`` under ``name``
    and, with ``preset``, the config ``backbone=<name>`` selects (stored for Hydra too).
    A plugin calls this at import, e.g. TAME's LeNet-5."""
    BACKBONES.register(name, builder)
    if preset is None:
        return
    if preset.name != name:
        raise ValueError(f"backbone preset {name!r} names another backbone ({preset.name!r})")
    if BACKBONE_PRESETS.get(name, preset) != preset:
        raise ValueError(f"backbone {name!r} already has another preset: {BACKBONE_PRESETS[name]}")
    BACKBONE_PRESETS[name] = preset
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="backbone", name=name, node=preset)


register_backbone("cnn28", _small_cnn, BackboneConfig(name="cnn28"))
register_backbone("resnet18", _torchvision_resnet("resnet18", "ResNet18_Weights"),
                  BackboneConfig(name="resnet18", weights="IMAGENET1K_V1", input_size=224, normalize="imagenet"))
register_backbone("resnet50", _torchvision_resnet("resnet50", "ResNet50_Weights"),
                  BackboneConfig(name="resnet50", weights="IMAGENET1K_V2", input_size=224, normalize="imagenet"))


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Total and trainable parameter counts, and buffer elements (BN statistics etc.)."""
    params = list(module.parameters())
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "buffers": sum(b.numel() for b in module.buffers()),
    }
