"""Image files decoded lazily: the dataset classes of every file-backed source
(split53's ImageFolder trees, VOC 2007's JPEGImages, COCO 2014's image folders).

Each access reads the file with PIL (RGB; grey and palette images expanded) and returns
a float tensor in [0, 1]; no crop, no augmentation (those belong to methods). Two
geometries, because batches need one shape:

- :class:`ImageFiles` (``square``): resized to ``image_size`` x ``image_size`` (bilinear,
  aspect ratio not kept): ``(3, image_size, image_size)``.
- :class:`LetterboxImageFiles` (``native``): the image at its native size (downscaled,
  aspect kept, only where its longer side exceeds ``image_size``), centred on an
  ``image_size`` x ``image_size`` canvas whose padding is :data:`PAD`, a value below
  every pixel: a method finds each image's box as the bounding box of its pixels >= 0
  and crops it at full resolution (MULTI-LANE's official transforms); a method that
  resizes the whole input sees a letterboxed image with a black border.

Memory does not grow with the number of images: nothing is decoded up front.

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


#: the padding of a letterboxed canvas: just below black, so that "pixel >= 0" tells an
#: image's pixels from the padding exactly, and a method that ignores it sees black
PAD = -(2.0 ** -10)
GEOMETRIES = ("native", "square")


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

    def decode(self, i: int):
        """Image ``i`` as an RGB PIL image at its native size."""
        from PIL import Image

        path = self.paths[i]
        try:
            with open(path, "rb") as f:
                return Image.open(f).convert("RGB")
        except OSError as err:  # absent, unreadable or not an image (PIL's errors are OSErrors)
            raise DataMissingError(f"could not read image {path}: {err}") from err

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` decoded: ``(3, image_size, image_size)`` float in [0, 1]."""
        from torchvision.transforms import functional as TF

        image = TF.resize(self.decode(i), [self.image_size, self.image_size])  # PIL bilinear (antialiased)
        return TF.to_tensor(image)

    def __getitem__(self, i: int):
        x = self.image(i)
        return x if self.labels is None else (x, self.labels[i])


class LetterboxImageFiles(ImageFiles):
    """Images at their native size (a longer side above ``image_size`` downscaled to it,
    aspect kept, PIL bilinear), centred on an ``image_size`` square canvas padded with
    :data:`PAD`: ``(3, image_size, image_size)``, pixels in [0, 1], padding negative."""

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` letterboxed (class docstring)."""
        from torchvision.transforms import functional as TF

        image, side = self.decode(i), self.image_size
        w, h = image.size
        if max(w, h) > side:
            scale = side / max(w, h)
            image = TF.resize(image, [max(1, min(side, round(h * scale))), max(1, min(side, round(w * scale)))])
        x = TF.to_tensor(image)
        h, w = x.shape[-2:]
        canvas = torch.full((3, side, side), PAD)
        top, left = (side - h) // 2, (side - w) // 2
        canvas[:, top:top + h, left:left + w] = x
        return canvas


def image_files(paths: Sequence[Union[str, Path]], image_size: int, geometry: str, *, fingerprint: str,
                labels: Optional[Sequence[Any]] = None) -> ImageFiles:
    """The dataset of ``geometry``: ``square`` (:class:`ImageFiles`) or ``native``
    (:class:`LetterboxImageFiles`, ``image_size`` the canvas side)."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry={geometry!r} is not a valid choice; valid choices: {list(GEOMETRIES)}")
    cls = LetterboxImageFiles if geometry == "native" else ImageFiles
    return cls(paths, image_size, fingerprint=fingerprint, labels=labels)
