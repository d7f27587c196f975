"""MS-COCO 2014 as a multi-label source, from its native instances json files.

Looked for under ``<data_root>``: ``coco``, ``coco2014``, ``COCO``, ``mscoco``, each with
``annotations/instances_{train,val}2014.json`` and the image folders ``train2014/`` and
``val2014/``. train2014 trains, val2014 tests (the MLCIL convention). An image's labels
are the categories of all its annotations (crowd ones included, as KRT's loader does).
Classes: the 80 categories sorted by name. Images are decoded lazily, in one of two
geometries (``scenarios/sources/images.py``): ``native`` (at their native size,
letterboxed on a ``max_side`` canvas; COCO's images are at most 640 px a side) or
``square`` (resized to ``image_size`` squares, aspect not kept).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from clbench.errors import DataMissingError
from scenarios.sources import MULTI_LABEL, SOURCES, MultiLabelSource
from scenarios.sources.images import image_files

SPLITS = {"train": "train2014", "test": "val2014"}
HOW_TO_GET = (
    "Get train2014.zip, val2014.zip and annotations_trainval2014.zip from https://cocodataset.org/#download "
    "and extract them in <data_root>/coco (giving coco/train2014, coco/val2014 and coco/annotations)."
)


def candidate_dirs(data_root: Optional[Path]) -> list[Path]:
    if data_root is None:
        return []
    return [Path(data_root) / name for name in ("coco", "coco2014", "COCO", "mscoco")]


def find_root(data_root: Optional[Path]) -> Path:
    for d in candidate_dirs(data_root):
        if all((d / "annotations" / f"instances_{s}.json").is_file() for s in SPLITS.values()):
            return d
    looked = ", ".join(str(d) for d in candidate_dirs(data_root)) or "nowhere (no data_root)"
    raise DataMissingError(
        f"MS-COCO 2014 not found: looked for annotations/instances_train2014.json and instances_val2014.json "
        f"in {looked}. {HOW_TO_GET}"
    )


def read_instances(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """Category names (sorted), image file names and bool labels ``(N, 80)`` of one json."""
    with open(path) as f:
        data = json.load(f)
    cats = sorted(data["categories"], key=lambda c: c["name"])
    col = {c["id"]: k for k, c in enumerate(cats)}
    images = sorted(data["images"], key=lambda im: im["id"])
    row = {im["id"]: n for n, im in enumerate(images)}
    labels = torch.zeros(len(images), len(cats), dtype=torch.bool)
    for ann in data["annotations"]:
        if ann["image_id"] not in row or ann["category_id"] not in col:
            raise ValueError(f"{path}: annotation {ann.get('id')} names an unknown image or category")
        labels[row[ann["image_id"]], col[ann["category_id"]]] = True
    return [c["name"] for c in cats], [im["file_name"] for im in images], labels


def load(data_root: Optional[Path], *, image_size: int = 224, geometry: str = "square", max_side: int = 640,
         download: bool = False) -> MultiLabelSource:
    """COCO 2014 train (train) and val (test) as a :class:`MultiLabelSource`: images resized
    to ``image_size`` squares (``geometry=square``) or letterboxed at native size on
    ``max_side`` canvases (``native``)."""
    if download:
        raise DataMissingError(f"MS-COCO 2014 has no automatic download here (scenario.download=true). {HOW_TO_GET}")
    root = find_root(data_root)
    side = max_side if geometry == "native" else image_size
    tag = f"native{side}" if geometry == "native" else f"{side}"
    parts, names = {}, None
    for split, folder in SPLITS.items():
        cats, files, labels = read_instances(root / "annotations" / f"instances_{folder}.json")
        if names is not None and cats != names:
            raise ValueError(f"{root}: train2014 and val2014 annotations disagree on the categories")
        names = cats
        paths = [root / folder / f for f in files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise DataMissingError(f"MS-COCO 2014 {folder}: {len(missing)} of {len(paths)} images missing, e.g. {missing[:3]}. {HOW_TO_GET}")
        parts[split] = (image_files(paths, side, geometry, fingerprint=f"coco2014/{folder}@{tag}px"), labels)
    return MultiLabelSource(
        "coco2014", parts["train"][0], parts["train"][1], parts["test"][0], parts["test"][1],
        list(names), (3, side, side), str(root),
    )


SOURCES.register("coco2014", load, kind=MULTI_LABEL, options=("image_size", "geometry", "max_side"))
