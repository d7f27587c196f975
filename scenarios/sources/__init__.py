"""Data sources: each reads one dataset's native on-disk format. One registry, ``SOURCES``.

A source is either single-label (:class:`LabelledSource`: train and test splits as
tensors with one class id per image; fmnist, cifar10, cifar100, digits) or multi-label
(:class:`MultiLabelSource`: images and a bool label matrix per split; voc2007,
coco2014, mlfmnist). A loader is called ``loader(data_root, *, download, **options)``;
``options`` are the scenario-config fields the source declares when it registers
(e.g. VOC's ``image_size``), read from the config by the builder that loads it.

    SOURCES.register("fmnist", load)                                       # single-label
    SOURCES.register("voc2007", load, kind=MULTI_LABEL, options=("image_size",))

Image-file sources decode lazily through :class:`scenarios.sources.images.ImageFiles`.
Each source module is imported when its source is first asked for (``SOURCE_MODULES``).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch

from clbench.api.data import TensorData
from clbench.registry import Registry, UnknownNameError
from scenarios.sources.images import ImageFiles

SINGLE_LABEL = "single-label"
MULTI_LABEL = "multi-label"
SOURCE_KINDS = (SINGLE_LABEL, MULTI_LABEL)


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


Images = Union[torch.Tensor, ImageFiles]  # a tensor of all images, or files decoded lazily (label-less)


@dataclass
class MultiLabelSource:
    """A multi-label dataset: images (a tensor, or files decoded lazily) and a bool label
    matrix ``(N, num_classes)`` per split; classes in the source's fixed order."""

    name: str
    train_images: Images
    train_labels: torch.Tensor
    test_images: Images
    test_labels: torch.Tensor
    class_names: list[str]
    input_shape: tuple[int, ...]
    origin: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


SourceLoader = Callable[..., Union[LabelledSource, MultiLabelSource]]  # loader(data_root, *, download, **options)


@dataclass(frozen=True)
class DataSource:
    """A registered source: its loader, kind and the config fields it takes as options."""

    name: str
    loader: SourceLoader
    kind: str = SINGLE_LABEL
    options: tuple[str, ...] = ()

    def options_from(self, config: Any) -> dict[str, Any]:
        """The declared options that ``config`` sets (others keep the loader's defaults)."""
        return {k: getattr(config, k) for k in self.options if hasattr(config, k)}

    def load(self, data_root: Optional[Path], *, download: bool = False, **options: Any):
        return self.loader(data_root, download=download, **options)


class SourceRegistry(Registry[SourceLoader]):
    """Every data source by name (``get`` gives its loader, :meth:`source` its entry)."""

    def __init__(self) -> None:
        super().__init__("data source")
        self._sources: dict[str, DataSource] = {}

    def register(self, name: str, item: SourceLoader, *, kind: str = SINGLE_LABEL,
                 options: Sequence[str] = ()) -> SourceLoader:
        if kind not in SOURCE_KINDS:
            raise ValueError(f"data source {name!r}: unknown kind {kind!r}; valid choices: {list(SOURCE_KINDS)}")
        super().register(name, item)
        self._sources[name] = DataSource(name, item, kind, tuple(options))
        return item

    def names(self, kind: Optional[str] = None, *, load: bool = True) -> list[str]:
        """Registered names (of ``kind`` when given); "_" names (test doubles) are not listed.
        ``load=False``: only those registered already (imports no plugin)."""
        names = super().names() if load else sorted(n for n in self._items if not n.startswith("_"))
        return names if kind is None else [n for n in names if self._sources[n].kind == kind]

    def source(self, name: str, kind: Optional[str] = None) -> DataSource:
        """The entry of ``name``; with ``kind``, refused unless the source is of that kind."""
        found = self._sources.get(name) if name in self else None  # `in` loads the plugins
        if found is not None and (kind is None or found.kind == kind):
            return found
        what = f"{kind} {self.kind}" if kind else self.kind
        choices = self.names(kind)
        close = difflib.get_close_matches(name, choices, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        other = f" ({name!r} is a {found.kind} source.)" if found is not None else ""
        raise UnknownNameError(f"unknown {what} {name!r}.{other}{hint} Valid choices: {', '.join(choices)}")


SOURCES = SourceRegistry()


def load_source(name: str, data_root: Optional[Path], *, download: bool = False, kind: str = SINGLE_LABEL,
                **options: Any) -> Union[LabelledSource, MultiLabelSource]:
    """Load source ``name`` (by default a single-label one: a :class:`LabelledSource`)."""
    return SOURCES.source(name, kind).load(data_root, download=download, **options)


#: the modules that register sources (``scenarios.plugin_modules`` lists them too); a
#: source is imported when it is first asked for (see ``clbench.registry``)
SOURCE_MODULES = ("cifar", "coco", "digits", "fmnist", "mlfmnist", "mnist", "voc")


def import_all() -> None:
    """Import every source module (each registers its sources)."""
    import importlib

    for module in SOURCE_MODULES:
        importlib.import_module(f"{__name__}.{module}")
