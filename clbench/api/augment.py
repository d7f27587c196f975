"""Training-time augmentation, declared by a scenario and applied by the protocol.

A scenario names its augmentation (``ScenarioInfo.augmentation``): ``none`` for the
28x28 sets, ``crop_flip`` (random 4-pixel-padded crop and horizontal flip, Mammoth's
seq-cifar) for CIFAR. The protocol applies it to every training batch and keeps the
raw inputs in ``Batch.raw``; a strategy that replays stored raw samples augments them
with :meth:`clbench.api.strategy.Strategy.augment` (the same transform, its own generator).
Transforms run batched on tensors, on the batch's device.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from clbench.registry import Registry

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation")


def _uniform_ints(n: int, high: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator).to(device)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to the input size at a random offset per sample."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = _uniform_ints(b, 2 * padding + 1, generator, x.device)
    dx = _uniform_ints(b, 2 * padding + 1, generator, x.device)
    wp = w + 2 * padding
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(b, c, h, wp)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(b, c, h, w)
    tall = padded.gather(2, rows)  # (b, c, h, wp): the chosen rows
    return tall.gather(3, cols)


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each sample left-right with probability 1/2."""
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def crop_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mammoth's seq-cifar training transform: RandomCrop(32, padding=4) + RandomHorizontalFlip."""
    return random_hflip(random_crop(x, 4, generator), generator)


def no_augmentation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x


AUGMENTATIONS.register("none", no_augmentation)
AUGMENTATIONS.register("crop_flip", crop_flip)
AUGMENTATIONS.register("flip", random_hflip)


def get_augmentation(name: Optional[str]) -> Augmentation:
    """The transform named ``name`` (``none`` when None)."""
    return AUGMENTATIONS.get(name or "none")
