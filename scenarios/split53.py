"""split53: CLR's 53-dataset task-incremental sequence (Ge et al., ICCV 2023).

One dataset = one task, in the order of the official ``stat.csv`` (shipped here as
``scenarios/data/split53_tasks.csv``: order, DCT id, name, classes, the paper's
subsampled image counts). Layout on disk, one ImageFolder tree per task:

    <data_root>/split53/<order>_<name>/{train,test}/<class>/<image>

``test/`` holds the split the paper evaluates on (the DCT release's validation set).
Images are decoded lazily, resized to ``image_size`` square (no aspect keep, as the
official code) and returned as float RGB tensors in [0, 1]; normalisation belongs to
the backbone. Task t's labels occupy the global ids ``offset_t .. offset_t + C_t - 1``,
offset_t = the classes of all tasks before t in the full 53-task order, so ids are the
same whichever subset runs (1,583 in all); ``num_classes`` is the end of the last
selected task's range (an upper bound for subsets).

``clbench data convert split53 --release DIR`` lays out the authors' release
(:func:`convert_release`); ``clbench data check split53`` reports what is there.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import random
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import Dataset

from clbench.errors import DataMissingError
from clbench.config import default_data_root
from clbench.scenario import DATA_COMMANDS, Scenario, ScenarioConfig, register_scenario
from clbench.types import TASK_INCREMENTAL, Experience

SUBSAMPLE_SEED = 27
LARGE_TASK_CLASSES = 60  # tasks with at least this many classes get the larger targets
TARGETS = {"large": {"train": 5120, "test": 512}, "small": {"train": 2560, "test": 256}}
SPLITS = ("train", "test")
PAPER_IMAGE_SIZE = 224
LAYOUT = "<data_root>/split53/<order>_<name>/{train,test}/<class>/<image>"


@dataclass(frozen=True)
class Split53Task:
    """One row of the task table; ``folder`` is its directory under ``<data_root>/split53``."""

    order: int
    dct_id: int
    name: str
    classes: int
    train_images: int  # the paper's count after subsampling
    eval_images: int

    @property
    def folder(self) -> str:
        return f"{self.order}_{self.name}"


@lru_cache(maxsize=1)
def task_table() -> tuple[Split53Task, ...]:
    """The 53 tasks in sequence order, read from the package's CSV."""
    text = resources.files("scenarios").joinpath("data", "split53_tasks.csv").read_text()
    rows = csv.DictReader(io.StringIO(text))
    return tuple(Split53Task(int(r["order"]), int(r["dct_id"]), r["name"], int(r["classes"]),
                             int(r["train_images"]), int(r["eval_images"])) for r in rows)


def class_offsets() -> dict[int, int]:
    """Order -> first global class id of that task (classes of all earlier tasks)."""
    offsets, total = {}, 0
    for task in task_table():
        offsets[task.order] = total
        total += task.classes
    return offsets


def parse_tasks(spec: str) -> list[Split53Task]:
    """Tasks chosen by order number: ``all``, ``3``, ``1-5``, ``1,4,7`` or a mix (``1-3,9``)."""
    table = {t.order: t for t in task_table()}
    valid = f"'all', an order number 1..{len(table)}, a range like '1-5', or a comma list like '1,4,7'"
    spec = str(spec).strip()
    if spec.lower() == "all":
        return list(table.values())
    chosen: set[int] = set()
    for part in spec.split(","):
        bounds = part.strip().split("-")
        try:
            lo, hi = (int(bounds[0]), int(bounds[-1])) if len(bounds) in (1, 2) else (None, None)
        except ValueError:
            lo = hi = None
        if lo is None or hi is None or lo > hi or lo not in table or hi not in table:
            raise ValueError(f"scenario.tasks={spec!r}: bad part {part.strip()!r}; valid: {valid}")
        chosen.update(range(lo, hi + 1))
    return [table[o] for o in sorted(chosen)]


# ---------------------------------------------------------------- subsampling (pure)

def subsample_target(num_classes: int, split: str) -> int:
    """The paper's image target for a task's split: 5,120 / 512 with >= 60 classes, else 2,560 / 256."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid choices: {list(SPLITS)}")
    return TARGETS["large" if num_classes >= LARGE_TASK_CLASSES else "small"][split]


def per_class_counts(available: Sequence[int], split: str) -> list[int]:
    """Images kept per class: round(target / C) (Python's round, as the official code), capped by availability."""
    quota = round(subsample_target(len(available), split) / len(available))
    return [min(quota, n) for n in available]


def subsample(files_by_class: Sequence[Sequence[str]], split: str, seed: int = SUBSAMPLE_SEED) -> list[list[str]]:
    """Keep ``per_class_counts`` files of each class: a fresh ``random.Random(seed)`` per
    task and split shuffles each class's sorted file list in class order, as the official
    loader reseeds Python's ``random`` for every dataset it builds."""
    rng = random.Random(seed)
    kept = []
    for files, k in zip(files_by_class, per_class_counts([len(f) for f in files_by_class], split)):
        files = sorted(files)
        rng.shuffle(files)
        kept.append(sorted(files[:k]))
    return kept


# ---------------------------------------------------------------- lazy images

class ImageFiles(Dataset):
    """Images read from disk on each access (memory does not grow with the task count):
    RGB (grey expanded), resized to ``image_size`` square, float in [0, 1]."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], image_size: int, fingerprint: str) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths, self.labels = list(paths), list(labels)
        self.image_size, self.fingerprint = image_size, fingerprint

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader
        from torchvision.transforms import functional as TF

        image = default_loader(self.paths[i])  # PIL, converted to RGB
        image = TF.resize(image, [self.image_size, self.image_size])
        return TF.to_tensor(image), self.labels[i]


# ---------------------------------------------------------------- layout check

def image_extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return tuple(IMG_EXTENSIONS) + (".gif", ".jfif")  # both occur in the authors' release


def scan_split(directory: Path) -> Optional[dict[str, list[str]]]:
    """Class folder -> its image files (sorted, any depth below), or None if the folder is absent."""
    from torchvision.datasets.folder import make_dataset

    if not directory.is_dir():
        return None
    classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
    files: dict[str, list[str]] = {c: [] for c in classes}
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        for path, k in make_dataset(str(directory), index, extensions=image_extensions(), allow_empty=True):
            files[classes[k]].append(path)
    return {c: sorted(f) for c, f in files.items()}


@dataclass
class TaskCheck:
    """What was found for one task; ``status`` is ``ok``, ``missing``, ``class count
    mismatch``, ``class names differ`` or ``empty classes``."""

    task: Split53Task
    status: str
    found_classes: dict = field(default_factory=dict)  # split -> count (None: folder absent)
    images: dict = field(default_factory=dict)  # split -> images found
    kept: dict = field(default_factory=dict)  # split -> images after the paper's subsampling
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Split53Report:
    """Per-task findings under ``root`` (= ``<data_root>/split53``)."""

    root: Path
    tasks: list[TaskCheck]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tasks)

    @property
    def problems(self) -> list[TaskCheck]:
        return [t for t in self.tasks if not t.ok]

    def summary(self) -> str:
        return f"{len(self.tasks) - len(self.problems)} of {len(self.tasks)} tasks usable under {self.root}"

    def lines(self, only_problems: bool = False) -> list[str]:
        """One plain line per task: folder, status, what was expected and found."""
        out = []
        for t in self.problems if only_problems else self.tasks:
            if all(t.found_classes.get(s) is None for s in SPLITS):
                out.append(f"{t.task.folder}: {t.status} ({t.detail})")
                continue
            found = ", ".join(f"{s} {_class_count_text(t.found_classes.get(s))}" for s in SPLITS)
            out.append(f"{t.task.folder}: {t.status} (classes expected {t.task.classes}; found {found})"
                       + (f"; {t.detail}" if t.detail else ""))
        return out


def _class_count_text(n: Optional[int]) -> str:
    return "absent" if n is None else str(n)


def inspect_task(root: Path, task: Split53Task) -> tuple[TaskCheck, dict[str, dict[str, list[str]]]]:
    """Check one task's folders against the table; return the check and its files by split and class."""
    tdir = root / task.folder
    if not tdir.is_dir():
        return TaskCheck(task, "missing", {s: None for s in SPLITS}, detail=f"no folder {tdir}"), {}
    files = {s: scan_split(tdir / s) for s in SPLITS}
    counts = {s: None if files[s] is None else len(files[s]) for s in SPLITS}
    images = {s: sum(len(v) for v in files[s].values()) if files[s] is not None else 0 for s in SPLITS}
    check = TaskCheck(task, "ok", counts, images)
    absent = [s for s in SPLITS if files[s] is None]
    if absent:
        check.status, check.detail = "missing", f"no {' or '.join(s + '/' for s in absent)} folder in {tdir}"
        return check, {}
    if any(counts[s] != task.classes for s in SPLITS):
        check.status = "class count mismatch"
        check.detail = ", ".join(f"{s}/ has {counts[s]}" for s in SPLITS if counts[s] != task.classes)
        return check, {}
    train_only, test_only = sorted(set(files["train"]) - set(files["test"])), sorted(set(files["test"]) - set(files["train"]))
    if train_only or test_only:
        check.status = "class names differ"
        check.detail = f"only in train/: {train_only[:3]}, only in test/: {test_only[:3]}"
        return check, {}
    empty = [f"{s}/{c}" for s in SPLITS for c, f in files[s].items() if not f]
    if empty:
        check.status, check.detail = "empty classes", f"no images in {', '.join(empty[:3])}" + (" ..." if len(empty) > 3 else "")
        return check, {}
    check.kept = {s: sum(per_class_counts([len(f) for f in files[s].values()], s)) for s in SPLITS}
    return check, files


def split53_root(data_root: Optional[Path]) -> Path:
    return Path(data_root if data_root is not None else default_data_root()).expanduser() / "split53"


def check_split53(data_root: Optional[Path], tasks: str = "all") -> Split53Report:
    """Report, per selected task, whether its folders exist and hold the expected classes."""
    root = split53_root(data_root)
    return Split53Report(root, [inspect_task(root, t)[0] for t in parse_tasks(tasks)])


def missing_message(report: Split53Report, data_root: Optional[Path]) -> str:
    lines = report.lines(only_problems=True) if report.root.is_dir() else [f"no folder {report.root}"]
    return (
        f"split53 data incomplete: {report.summary()}.\n  " + "\n  ".join(lines)
        + f"\nExpected layout: {LAYOUT} (one ImageFolder tree per task, class counts as in "
        f"scenarios/data/split53_tasks.csv). The images come from the CLR authors' release of the DCT / SKILL "
        f"datasets; see the README section 'split53 data' to convert it. Check with "
        f"`clbench data check split53 --data-root {data_root if data_root is not None else '<data_root>'}`; "
        f"run a subset with scenario.tasks=1-5."
    )


# ---------------------------------------------------------------- the scenario

@dataclass
class Split53Config(ScenarioConfig):
    """``tasks``: which tasks run, by order number (``all``, ``1-5``, ``3``, ``1,4,7``).
    ``subsample``: the paper's per-class subsampling (seed 27, whatever the run seed)."""

    kind: str = TASK_INCREMENTAL
    default_backbone: str = "resnet18"
    tasks: str = "all"
    image_size: int = PAPER_IMAGE_SIZE
    subsample: bool = True


def _dataset(task: Split53Task, split: str, by_class: list[list[str]], offset: int, image_size: int, tdir: Path) -> ImageFiles:
    paths = [p for files in by_class for p in files]
    labels = [offset + k for k, files in enumerate(by_class) for _ in files]
    rel = "\n".join(os.path.relpath(p, tdir) for p in paths)
    digest = hashlib.sha1(rel.encode()).hexdigest()[:12]
    return ImageFiles(paths, labels, image_size, f"split53/{task.folder}/{split}/{image_size}px/{digest}")


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


# ---------------------------------------------------------------- the authors' release -> layout

def convert_release(release: Path, data_root: Path, tasks: str = "all", copy: bool = False) -> dict[str, dict[str, int]]:
    """Lay out the CLR authors' DCT / SKILL release as ``LAYOUT`` (symlinks, or copies).

    Reads the release's ``rolling_releases/database_2.sqlite`` as the official loader
    does: table ``files`` rows with ``problem=0`` of the task's ``dataset_id`` (our
    ``dct_id``), ``set`` 0 -> ``train/``, 1 (the split the paper evaluates on) ->
    ``test/``; the image is ``original_images/<dataset_name><path><filename>``. Class
    folders are the zero-padded ``class_id``; files are named by their hash. Returns
    the images written per task and split, and how many listed files were absent.
    """
    import shutil
    import sqlite3
    from contextlib import closing

    release, data_root = Path(release).expanduser(), Path(data_root).expanduser()
    database = release / "rolling_releases" / "database_2.sqlite"
    if not database.is_file():
        raise DataMissingError(f"no {database}: --release must be the folder where the authors' release was unzipped")
    written: dict[str, dict[str, int]] = {}
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        for task in parse_tasks(tasks):
            row = db.execute("SELECT dataset_name FROM datasets WHERE dataset_id=?", (task.dct_id,)).fetchone()
            if row is None:
                raise DataMissingError(f"{database} has no dataset_id {task.dct_id} (task {task.folder})")
            counts = written[task.folder] = {"train": 0, "test": 0, "absent": 0}
            for split, set_id in (("train", 0), ("test", 1)):
                rows = db.execute('SELECT hash, path, filename, class_id FROM files WHERE dataset_id=? AND problem=0 AND "set"=?',
                                  (task.dct_id, set_id)).fetchall()
                for digest, path, filename, class_id in rows:
                    source = Path(f"{release}/original_images/{row[0]}{path}{filename}")
                    if not source.is_file():
                        counts["absent"] += 1
                        continue
                    target = data_root / "split53" / task.folder / split / f"{int(class_id):04d}" / f"{digest}{Path(filename).suffix}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if target.exists() or target.is_symlink():
                        target.unlink()
                    if copy:
                        shutil.copyfile(source, target)
                    else:
                        target.symlink_to(source)
                    counts[split] += 1
    return written


def data_convert_command(args: list[str]) -> int:
    """``clbench data convert split53 --release DIR [--data-root DIR] [--tasks SPEC] [--copy]``."""
    parser = argparse.ArgumentParser(prog="clbench data convert split53",
                                     description=f"Lay out the authors' release as {LAYOUT}")
    parser.add_argument("--release", type=Path, required=True, help="the unzipped DCT / SKILL release")
    parser.add_argument("--data-root", type=Path, default=None, help="default: $CLBENCH_DATA or ~/.cache/clbench/data")
    parser.add_argument("--tasks", default="all", help="all | 1-5 | 3 | 1,4,7")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of linking them")
    ns = parser.parse_args(args)
    data_root = ns.data_root or default_data_root()
    written = convert_release(ns.release, data_root, ns.tasks, ns.copy)
    total = {k: sum(n[k] for n in written.values()) for k in ("train", "test", "absent")}
    print(f"wrote {total['train']} train and {total['test']} test images for {len(written)} tasks under "
          f"{data_root / 'split53'}" + (f"; {total['absent']} listed images were absent from the release" if total["absent"] else ""))
    return data_check_command(["--data-root", str(data_root), "--tasks", ns.tasks])


# ---------------------------------------------------------------- `clbench data`



def print_report(report: Split53Report) -> None:
    """The per-task report as a rich table, then one plain line per problem."""
    from rich.console import Console
    from rich.table import Table

    import sys

    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(title=f"split53 under {report.root}")
    for col in ("task", "status", "classes", "train cls", "test cls", "train imgs", "test imgs", "kept (paper)"):
        table.add_column(col, no_wrap=True)
    for t in report.tasks:
        kept = f"{t.kept['train']}/{t.kept['test']} ({t.task.train_images}/{t.task.eval_images})" if t.kept else "-"
        style = "green" if t.ok else "red"
        table.add_row(t.task.folder, f"[{style}]{t.status}[/{style}]", str(t.task.classes),
                      _class_count_text(t.found_classes.get("train")), _class_count_text(t.found_classes.get("test")),
                      str(t.images.get("train", "-")), str(t.images.get("test", "-")), kept)
    console.print(table)
    for line in report.lines(only_problems=True):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    console.print(report.summary(), soft_wrap=True, markup=False, highlight=False)


def data_check_command(args: list[str]) -> int:
    """``clbench data check split53 [--data-root DIR] [--tasks SPEC]``: 0 when every task is usable, else 1."""
    parser = argparse.ArgumentParser(prog="clbench data check split53",
                                     description=f"Check the split53 layout: {LAYOUT}")
    parser.add_argument("--data-root", type=Path, default=None, help="default: $CLBENCH_DATA or ~/.cache/clbench/data")
    parser.add_argument("--tasks", default="all", help="all | 1-5 | 3 | 1,4,7")
    ns = parser.parse_args(args)
    report = check_split53(ns.data_root, ns.tasks)
    print_report(report)
    return 0 if report.ok else 1


#: ``clbench data <action> <name>`` commands, by action and scenario name.
DATA_COMMANDS.register("check/split53", data_check_command)
DATA_COMMANDS.register("convert/split53", data_convert_command)
