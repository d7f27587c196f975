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

By job: ``tasks`` (the task table, task selection), ``sampling`` (the paper's
subsampling rule), ``layout`` (the layout check and its report), ``convert`` (the
release converter), ``commands`` (the ``clbench data`` handlers), ``builder`` (config,
scenario builder, registration). Importing the package registers the scenario and the
commands; the names below are its public interface.
"""
from __future__ import annotations

from scenarios.sources.images import ImageFiles
from scenarios.split53.builder import PAPER_IMAGE_SIZE, Split53Config, build_split53
from scenarios.split53.commands import data_check_command, data_convert_command, print_report
from scenarios.split53.convert import convert_release
from scenarios.split53.layout import (
    LAYOUT, Split53Report, TaskCheck, check_split53, image_extensions, inspect_task, missing_message, scan_split,
    split53_root,
)
from scenarios.split53.sampling import (
    LARGE_TASK_CLASSES, SUBSAMPLE_SEED, TARGETS, per_class_counts, subsample, subsample_target,
)
from scenarios.split53.tasks import SPLITS, Split53Task, class_offsets, parse_tasks, task_table

__all__ = [
    "ImageFiles", "LARGE_TASK_CLASSES", "LAYOUT", "PAPER_IMAGE_SIZE", "SPLITS", "SUBSAMPLE_SEED", "TARGETS",
    "Split53Config", "Split53Report", "Split53Task", "TaskCheck", "build_split53", "check_split53",
    "class_offsets", "convert_release", "data_check_command", "data_convert_command", "image_extensions",
    "inspect_task", "missing_message", "parse_tasks", "per_class_counts", "print_report", "scan_split",
    "split53_root", "subsample", "subsample_target", "task_table",
]
