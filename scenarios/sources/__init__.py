"""Labelled data sources: each reads one dataset's native on-disk format."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from clbench.data import TensorData
from clbench.registry import Registry


@dataclass
class LabelledSource:
    """A dataset's train and test splits in memory, with its class names."""

    name: str
    train: TensorData
    test: TensorData
    class_names: list[str]
    input_shape: tuple[int, ...]
    origin: str  # where the files were read from

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


SourceLoader = Callable[..., LabelledSource]  # loader(data_root, *, download) -> LabelledSource
SOURCES: Registry[SourceLoader] = Registry("data source")


def load_source(name: str, data_root: Optional[Path], *, download: bool = False) -> LabelledSource:
    return SOURCES.get(name)(data_root, download=download)


from scenarios.sources import cifar, digits, fmnist  # noqa: E402,F401  (registers)
