"""The ``split53`` scenario: its config, the builder and the registration."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from clbench.api.scenario import Scenario, ScenarioConfig, register_scenario
from clbench.errors import DataMissingError
from clbench.fields import setting
from clbench.types import TASK_INCREMENTAL, Experience
from scenarios.sources.images import ImageFiles
from scenarios.split53.layout import Split53Report, inspect_task, missing_message, split53_root
from scenarios.split53.sampling import LARGE_TASK_CLASSES, SUBSAMPLE_SEED, TARGETS, subsample
from scenarios.split53.tasks import SPLITS, Split53Task, class_offsets, parse_tasks, task_table

PAPER_IMAGE_SIZE = 224


@dataclass
class Split53Config(ScenarioConfig):
    """``tasks``: which tasks run, by order number (``all``, ``1-5``, ``3``, ``1,4,7``).
    ``subsample``: the paper's per-class subsampling (seed 27, whatever the run seed)."""

    kind: str = TASK_INCREMENTAL
    default_backbone: str = "resnet18"
    tasks: str = setting("all", "which tasks run, by order number: all, 1-5, 3, 1,4,7")
    image_size: int = setting(PAPER_IMAGE_SIZE, "side in pixels the decoded images are resized to (the paper's: 224)")
    subsample: bool = setting(True, "the paper's per-class subsample (>= 60 classes: 5,120 / 512 images, else "
                                    "2,560 / 256; seed 27)")


def _dataset(task: Split53Task, split: str, by_class: list[list[str]], offset: int, image_size: int, tdir: Path) -> ImageFiles:
    paths = [p for files in by_class for p in files]
    labels = [offset + k for k, files in enumerate(by_class) for _ in files]
    rel = "\n".join(os.path.relpath(p, tdir) for p in paths)
    digest = hashlib.sha1(rel.encode()).hexdigest()[:12]
    return ImageFiles(paths, image_size, labels=labels, fingerprint=f"split53/{task.folder}/{split}/{image_size}px/{digest}")


def build_split53(cfg: Split53Config, *, data_root: Optional[Path], seed: int) -> Scenario:
    """The selected tasks as experiences (``seed`` is unused: subsampling uses seed 27)."""
    if cfg.image_size <= 0:
        raise ValueError(f"scenario.image_size must be a positive number of pixels, got {cfg.image_size}")
    selected = parse_tasks(cfg.tasks)
    root = split53_root(data_root)
    inspected = [inspect_task(root, t) for t in selected]
    report = Split53Report(root, [c for c, _ in inspected])
    if not report.ok:
        raise DataMissingError(missing_message(report, data_root))
    offsets = class_offsets()
    experiences, images, class_names = [], {}, {}
    for i, (task, (_, files)) in enumerate(zip(selected, inspected)):
        names = sorted(files["train"])  # ImageFolder's class order
        sets = {}
        for split in SPLITS:
            by_class = [files[split][c] for c in names]
            if cfg.subsample:
                by_class = subsample(by_class, split)
            sets[split] = _dataset(task, split, by_class, offsets[task.order], cfg.image_size, root / task.folder)
        off = offsets[task.order]
        class_names.update({off + k: f"{task.name}/{c}" for k, c in enumerate(names)})
        experiences.append(Experience(i, sets["train"], sets["test"], tuple(range(off, off + task.classes)), task.order - 1))
        images[task.folder] = {"train": len(sets["train"]), "test": len(sets["test"]),
                               "paper": {"train": task.train_images, "test": task.eval_images}}
    num_classes = offsets[selected[-1].order] + selected[-1].classes
    return Scenario(
        name=cfg.name, kind=cfg.kind, experiences=experiences, num_classes=num_classes,
        input_shape=(3, cfg.image_size, cfg.image_size), class_order=[c for e in experiences for c in e.classes],
        class_names=[class_names.get(c, f"(task not selected)/{c}") for c in range(num_classes)],
        description={
            "source": "split53 (CLR, Ge et al. ICCV 2023: 53 DCT datasets, one task each)", "dataset": "split53",
            "files": str(root), "tasks": [t.order for t in selected],
            "subsampling": (f"per class round(target / C) images, capped by availability; target {TARGETS['large']} "
                            f"for tasks with >= {LARGE_TASK_CLASSES} classes, else {TARGETS['small']}; seed {SUBSAMPLE_SEED}")
            if cfg.subsample else "none",
            "evaluation_split": "test/ = the release's validation split, as in the official code",
            "images": images, "deviations": _deviations(cfg, selected, images),
        },
    )


def _deviations(cfg: Split53Config, selected: list[Split53Task], images: dict) -> list[str]:
    out = []
    if len(selected) != len(task_table()):
        out.append(f"tasks {cfg.tasks}: {len(selected)} of {len(task_table())} tasks")
    if not cfg.subsample:
        out.append("no subsampling (the paper keeps <= 5,120 / 512 or 2,560 / 256 images per task)")
    if cfg.image_size != PAPER_IMAGE_SIZE:
        out.append(f"image_size {cfg.image_size} (paper {PAPER_IMAGE_SIZE})")
    if cfg.subsample:
        differ = [f for f, n in images.items() if (n["train"], n["test"]) != (n["paper"]["train"], n["paper"]["test"])]
        if differ:
            out.append(f"{len(differ)} of {len(images)} tasks have image counts other than the paper's after "
                       f"subsampling (see description.images), first: {differ[0]}")
    return out


register_scenario("split53", build_split53, Split53Config())
