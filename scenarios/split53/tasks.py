"""split53's task table (``scenarios/data/split53_tasks.csv``, the official ``stat.csv``):
one row per task in sequence order, the global class offsets, and task selection."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

SPLITS = ("train", "test")


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
