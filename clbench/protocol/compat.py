"""What the protocol refuses before any data is read: a strategy or add-on paired with a
scenario that hides what it needs, or a family it does not support; an unknown device."""
from __future__ import annotations

from typing import Any

import torch

from clbench.errors import UserError
from clbench.types import KINDS, VISIBILITY_BY_KIND, VISIBLE_THINGS


class IncompatibleError(UserError, ValueError):
    """A strategy paired with a scenario it cannot run on (refused before training)."""


def check_compatible(strategy_cls: type, kind: str, scenario_name: str = "?") -> None:
    """Refuse a pairing whose scenario hides something the strategy needs, or whose
    family the strategy does not support; the message names both and the choices."""
    name = getattr(strategy_cls, "name", strategy_cls.__name__)
    if kind not in KINDS:
        raise IncompatibleError(f"unknown scenario kind {kind!r}; valid choices: {list(KINDS)}")
    if kind not in strategy_cls.kinds:
        raise IncompatibleError(
            f"strategy {name!r} does not support {kind} scenarios such as {scenario_name!r}; "
            f"it supports: {sorted(strategy_cls.kinds)}"
        )
    vis = VISIBILITY_BY_KIND[kind]
    hidden = [t for t in VISIBLE_THINGS if t in strategy_cls.needs and not vis.shows(t)]
    if hidden:
        fits = [k for k in strategy_cls.kinds if all(VISIBILITY_BY_KIND[k].shows(t) for t in strategy_cls.needs)]
        raise IncompatibleError(
            f"strategy {name!r} needs {hidden}, which scenario {scenario_name!r} ({kind}) hides; "
            f"it runs on scenario kinds: {sorted(fits)}"
        )


def check_addon_compatible(addon: Any, scenario: Any) -> None:
    vis = scenario.visibility
    hidden = [t for t in addon.needs if not vis.shows(t)]
    if hidden:
        raise IncompatibleError(f"addon {addon.name!r} needs {hidden}, which scenario {scenario.name!r} "
                                f"({scenario.kind}) hides")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}; valid choices: 'auto', 'cpu', 'cuda', 'cuda:N'")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)
