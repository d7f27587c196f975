"""Auxiliary data sets the protocol can hand to a method before the stream
(``clbench.api.auxdata``): scikit-learn's bundled digits, and the training split of every
registered single-label source (e.g. ``fmnist``: the protocol refuses it for a
Fashion-MNIST stream; the multi-label sources, voc2007, coco2014 and mlfmnist, are not
auxiliary sets). Images come as stored (in [0, 1]); the method adapts them."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from clbench.api.auxdata import AuxData, register_aux_dataset
from clbench.api.data import TensorData
from scenarios.sources import SINGLE_LABEL, SOURCES, import_all, load_source
from scenarios.sources.digits import all_images


def sklearn_digits(data_root: Optional[Path], input_shape: tuple[int, ...]) -> AuxData:
    """All 1,797 8x8 digits (both splits of the ``digits`` source: it is the same data set)."""
    import sklearn

    x, y = all_images()
    return AuxData(TensorData(x, y, fingerprint="digits/all"), "digits",
                   f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__}, bundled), 1,797 8x8 images")


def source_train_split(name: str):
    def load(data_root: Optional[Path], input_shape: tuple[int, ...]) -> AuxData:
        src = load_source(name, data_root)
        return AuxData(src.train, name, f"{name} train split ({src.origin})")

    return load


register_aux_dataset("sklearn_digits", sklearn_digits)
import_all()  # every single-label source is an auxiliary set
for _name in SOURCES.names(SINGLE_LABEL, load=False):
    register_aux_dataset(_name, source_train_split(_name))
