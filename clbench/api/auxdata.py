"""Auxiliary data sets: extra data a method uses BEFORE the stream (DKVB's key-init
images, CLR's and MULTI-LANE's pretraining sets), handed over by the protocol.

A strategy never gets a data root. It names what it wants in its config and declares
it in :meth:`clbench.api.strategy.Strategy.aux_requests` (purpose -> registered name); the
protocol loads each one here, refuses any that comes from the stream's own data set
(``AuxData.dataset`` equal to ``ScenarioInfo.dataset``), passes them to
``Strategy.prepare(aux)`` and writes what was used into the record. Data packages
register their sets with :func:`register_aux_dataset` (ours: ``scenarios.auxiliary``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from clbench.api.data import TensorData
from clbench.registry import Registry


@dataclass
class AuxData:
    """``data``: images in [0, 1] (labels may be unused by the method); ``dataset``: the
    underlying data set's name, compared with the stream's; ``origin``: where it came from."""

    data: TensorData
    dataset: str
    origin: str


AuxLoader = Callable[[Optional[Path], tuple[int, ...]], AuxData]  # (data_root, wanted input shape) -> AuxData
AUX_DATASETS: Registry[AuxLoader] = Registry("auxiliary data set")


def register_aux_dataset(name: str, loader: AuxLoader) -> None:
    AUX_DATASETS.register(name, loader)


class AuxDataRefused(ValueError):
    """An auxiliary data set that is the stream's own data (the learner would see the
    stream's inputs, test images included, before the stream starts)."""


def load_aux(requests: dict[str, str], *, data_root: Optional[Path], input_shape: tuple[int, ...],
             stream_dataset: str) -> tuple[dict[str, AuxData], dict[str, dict]]:
    """Load every requested set: ``({purpose: AuxData}, {purpose: facts for the record})``."""
    loaded, facts = {}, {}
    for purpose, name in requests.items():
        loader = AUX_DATASETS.get(name)  # unknown names: an error listing the valid choices
        aux = loader(data_root, tuple(input_shape))
        if aux.dataset == stream_dataset:
            raise AuxDataRefused(
                f"auxiliary data set {name!r} (for {purpose}) is the stream's own data set {stream_dataset!r}; "
                f"a method may use extra data only from another data set; valid choices: "
                f"{[n for n in AUX_DATASETS.names() if n != name]}")
        loaded[purpose] = aux
        facts[purpose] = {"name": name, "dataset": aux.dataset, "origin": aux.origin, "samples": len(aux.data)}
    return loaded, facts


def aux_for(strategy, *, data_root: Optional[Path] = None) -> dict[str, AuxData]:
    """The auxiliary data sets ``strategy`` asks for, loaded as the protocol would (for
    driving a strategy by hand: ``s.prepare(aux_for(s))``)."""
    loaded, _ = load_aux(strategy.aux_requests(), data_root=data_root, input_shape=tuple(strategy.info.input_shape),
                         stream_dataset=strategy.info.dataset)
    return loaded
