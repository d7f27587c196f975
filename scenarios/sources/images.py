"""Image files decoded lazily: the one dataset class of every file-backed source
(split53's ImageFolder trees, VOC 2007's JPEGImages, COCO 2014's image folders).

Each access reads the file with PIL (RGB; grey and palette images expanded), resizes it
to ``image_size`` x ``image_size`` (bilinear, no aspect keep, no crop, no augmentation:
those belong to methods) and returns a float tensor ``(3, image_size, image_size)`` in
[0, 1]. Memory does not grow with the number of images: nothing is decoded up front.

Labels are optional. With a per-image ``labels`` list an item is ``(x, label)`` (a
single-label dataset, as split53's tasks); without, an item is the image tensor alone,
for sources that keep their labels elsewhere (VOC and COCO hold a multi-hot matrix per
split and select rows of it: ``scenarios/multilabel.py``).

``paths`` and ``image_size`` are what the core's feature cache hashes to address a
dataset's content (``clbench.models.features.content_digest``: the bytes of every file and the
decode size); ``fingerprint`` names the content for the caller's caches and is kept
as given (callers include the decode size in it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

from clbench.errors import DataMissingError


class ImageFiles(Dataset):
    """Images read from disk on each access, resized to ``image_size`` square, float RGB
    in [0, 1]; an item is ``(x, labels[i])`` when ``labels`` is given, else ``x``."""

    def __init__(self, paths: Sequence[Union[str, Path]], image_size: int, *, fingerprint: str,
                 labels: Optional[Sequence[Any]] = None) -> None:
        if image_size <= 0:
            raise ValueError(f"image_size must be > 0, got {image_size}")
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [str(p) for p in paths]
        self.labels = None if labels is None else list(labels)
        self.image_size = image_size
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` decoded: ``(3, image_size, image_size)`` float in [0, 1]."""
        from PIL import Image
        from torchvision.transforms import functional as TF

        path = self.paths[i]
        try:
            with open(path, "rb") as f:
                image = Image.open(f).convert("RGB")
        except OSError as err:  # absent, unreadable or not an image (PIL's errors are OSErrors)
            raise DataMissingError(f"could not read image {path}: {err}") from err
        image = TF.resize(image, [self.image_size, self.image_size])  # PIL bilinear (antialiased)
        return TF.to_tensor(image)

    def __getitem__(self, i: int):
        x = self.image(i)
        return x if self.labels is None else (x, self.labels[i])
