"""The split53 layout on disk and its check: what is there for each task, as a report."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from clbench.config import default_data_root
from scenarios.split53.sampling import per_class_counts
from scenarios.split53.tasks import SPLITS, Split53Task, parse_tasks

LAYOUT = "<data_root>/split53/<order>_<name>/{train,test}/<class>/<image>"


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
            found = ", ".join(f"{s} {class_count_text(t.found_classes.get(s))}" for s in SPLITS)
            out.append(f"{t.task.folder}: {t.status} (classes expected {t.task.classes}; found {found})"
                       + (f"; {t.detail}" if t.detail else ""))
        return out


def class_count_text(n: Optional[int]) -> str:
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
