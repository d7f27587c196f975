"""``clbench data check split53`` and ``clbench data convert split53`` (registered in
``clbench.api.scenario.DATA_COMMANDS`` on import)."""
from __future__ import annotations

import argparse
from pathlib import Path

from clbench.api.scenario import DATA_COMMANDS
from clbench.config import default_data_root
from scenarios.split53.convert import convert_release
from scenarios.split53.layout import LAYOUT, Split53Report, check_split53, class_count_text


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


def print_report(report: Split53Report) -> None:
    """The per-task report as a rich table, then one plain line per problem."""
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(title=f"split53 under {report.root}")
    for col in ("task", "status", "classes", "train cls", "test cls", "train imgs", "test imgs", "kept (paper)"):
        table.add_column(col, no_wrap=True)
    for t in report.tasks:
        kept = f"{t.kept['train']}/{t.kept['test']} ({t.task.train_images}/{t.task.eval_images})" if t.kept else "-"
        style = "green" if t.ok else "red"
        table.add_row(t.task.folder, f"[{style}]{t.status}[/{style}]", str(t.task.classes),
                      class_count_text(t.found_classes.get("train")), class_count_text(t.found_classes.get("test")),
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
