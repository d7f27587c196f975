"""PASCAL VOC 2007 as a multi-label source, from its native VOCdevkit layout.

Looked for under ``<data_root>``: ``VOCdevkit/VOC2007``, ``VOC2007``, ``voc/VOCdevkit/VOC2007``.
Needs ``ImageSets/Main/{trainval,test}.txt``, ``ImageSets/Main/<class>_{trainval,test}.txt``
and ``JPEGImages/<id>.jpg``. A label is positive only where the class file says ``1``
(``0`` = difficult only and ``-1`` = absent are both not positive). trainval trains,
test tests. Classes: the 20 VOC names, alphabetical. Images are decoded lazily, in one of
two geometries (``scenarios/sources/images.py``): ``native`` (at their native size,
letterboxed on a ``max_side`` canvas; VOC's images are at most 500 px a side) or
``square`` (resized to ``image_size`` squares, aspect not kept).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from clbench.errors import DataMissingError
from scenarios.sources import MULTI_LABEL, SOURCES, MultiLabelSource
from scenarios.sources.images import ImageFiles, image_files

CLASS_NAMES = sorted([
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
])
SPLITS = ("trainval", "test")
HOW_TO_GET = (
    "Get VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2007/ "
    "and extract both in <data_root> (they create VOCdevkit/VOC2007), or set scenario.download=true "
    "(torchvision's VOCDetection fetches them)."
)


def candidate_dirs(data_root: Optional[Path]) -> list[Path]:
    if data_root is None:
        return []
    root = Path(data_root)
    return [root / "VOCdevkit" / "VOC2007", root / "VOC2007", root / "voc" / "VOCdevkit" / "VOC2007"]


def find_root(data_root: Optional[Path]) -> Path:
    """The first candidate directory holding both split lists."""
    for d in candidate_dirs(data_root):
        if all((d / "ImageSets" / "Main" / f"{s}.txt").is_file() for s in SPLITS):
            return d
    looked = ", ".join(str(d) for d in candidate_dirs(data_root)) or "nowhere (no data_root)"
    raise DataMissingError(
        f"PASCAL VOC 2007 not found: looked for ImageSets/Main/trainval.txt and test.txt in {looked}. {HOW_TO_GET}"
    )


def _read_lines(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataMissingError(f"PASCAL VOC 2007 is incomplete: {path} is missing. {HOW_TO_GET}")
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def read_split(root: Path, split: str) -> tuple[list[str], torch.Tensor]:
    """Image ids of ``split`` and their bool labels ``(N, 20)`` (positive only where ``1``)."""
    ids = [parts[0] for parts in _read_lines(root / "ImageSets" / "Main" / f"{split}.txt")]
    row = {image_id: n for n, image_id in enumerate(ids)}
    labels = torch.zeros(len(ids), len(CLASS_NAMES), dtype=torch.bool)
    for c, name in enumerate(CLASS_NAMES):
        path = root / "ImageSets" / "Main" / f"{name}_{split}.txt"
        for parts in _read_lines(path):
            if len(parts) != 2 or parts[0] not in row:
                raise ValueError(f"{path}: unexpected line {' '.join(parts)!r} (expected '<image id> <1|0|-1>' for an id of {split}.txt)")
            if parts[1] == "1":
                labels[row[parts[0]], c] = True
    return ids, labels


def _images(root: Path, ids: list[str], split: str, side: int, geometry: str) -> ImageFiles:
    paths = [root / "JPEGImages" / f"{i}.jpg" for i in ids]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataMissingError(
            f"PASCAL VOC 2007 {split}: {len(missing)} of {len(paths)} images missing, e.g. {missing[:3]}. {HOW_TO_GET}"
        )
    tag = f"native{side}" if geometry == "native" else f"{side}"
    return image_files(paths, side, geometry, fingerprint=f"voc2007/{split}@{tag}px")


def load(data_root: Optional[Path], *, image_size: int = 224, geometry: str = "square", max_side: int = 500,
         download: bool = False) -> MultiLabelSource:
    """VOC 2007 trainval (train) and test as a :class:`MultiLabelSource`: images resized to
    ``image_size`` squares (``geometry=square``) or letterboxed at native size on
    ``max_side`` canvases (``native``)."""
    if download:
        from torchvision.datasets import VOCDetection

        if data_root is None:
            raise DataMissingError("scenario.download=true needs a data_root to download into")
        for split in SPLITS:
            VOCDetection(str(data_root), year="2007", image_set=split, download=True)
    root = find_root(data_root)
    (tr_ids, tr_labels), (te_ids, te_labels) = read_split(root, "trainval"), read_split(root, "test")
    side = max_side if geometry == "native" else image_size
    return MultiLabelSource(
        "voc2007", _images(root, tr_ids, "trainval", side, geometry), tr_labels,
        _images(root, te_ids, "test", side, geometry), te_labels, list(CLASS_NAMES), (3, side, side), str(root),
    )


SOURCES.register("voc2007", load, kind=MULTI_LABEL, options=("image_size", "geometry", "max_side"))
