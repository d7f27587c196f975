"""Config fields that describe themselves: a one-line help text and the valid range.

A config dataclass (a strategy's, a scenario's, an add-on's, the run settings) declares
both where the field is defined::

    lr: float = setting(0.1, "learning rate of the experts' SGD", gt=0)
    modules: str = setting("bn_fc", "modules FPF finetunes", choices=("bn_fc", "fc", "auto"))
    k: int = setting(10, "FPF phases over the whole stream", ge=1, recipe="ours")

One reader checks them everywhere: :func:`problems` (used by ``clbench.config.validate``
on the composed config before anything is built, and by ``Strategy.__init__`` and
``Addon.__init__`` for objects built from Python). A subclass that only changes a
default (``epochs: int = 50``) keeps the help and range its base declared
(:func:`field_meta` reads them through the class's bases). Constraints between fields
(e.g. DKVB's ``topk <= pairs_per_codebook``) stay in the class that has both.

``recipe`` keeps its meaning for deviations (``Strategy.deviations``): True (default) a
paper setting, ``"ours"`` our default where the paper gives none, False not a recipe
setting at all (harness paths, caches). This module imports nothing heavy.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Optional, Sequence, Union

HELP = "help"
VALID = "valid"
RECIPE = "recipe"


@dataclass(frozen=True)
class Valid:
    """A field's valid values: bounds (``ge``/``gt``/``le``/``lt``) for numbers, or ``choices``."""

    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    choices: Optional[tuple] = None

    def describe(self, integer: bool) -> str:
        """The valid values as words, e.g. ``an integer >= 1``, ``a number in [0, 1)``."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        what = "an integer" if integer else "a number"
        low = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        high = ("]", self.le) if self.le is not None else (")", self.lt) if self.lt is not None else None
        if low and high:
            return f"{what} in {low[0]}{_num(low[1])}, {_num(high[1])}{high[0]}"
        if low:
            return f"{what} {'>=' if low[0] == '[' else '>'} {_num(low[1])}"
        if high:
            return f"{what} {'<=' if high[0] == ']' else '<'} {_num(high[1])}"
        return what

    def accepts(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def to_data(self) -> dict:
        """Plain data (for the config index)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
                if v is not None}

    @classmethod
    def from_data(cls, data: dict) -> "Valid":
        data = dict(data)
        if "choices" in data:
            data["choices"] = tuple(data["choices"])
        return cls(**data)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)


def setting(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, ge: Optional[float] = None,
            gt: Optional[float] = None, le: Optional[float] = None, lt: Optional[float] = None,
            choices: Optional[Sequence[Any]] = None, recipe: Union[bool, str] = True,
            **metadata: Any) -> Any:
    """A dataclass field with a help text, a valid range or choices, and its recipe role."""
    meta: dict[str, Any] = dict(metadata)
    if help:
        meta[HELP] = help
    if any(v is not None for v in (ge, gt, le, lt, choices)):
        meta[VALID] = Valid(ge, gt, le, lt, None if choices is None else tuple(choices))
    if recipe is not True:
        meta[RECIPE] = recipe
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_meta(cls: type, name: str, key: str) -> Any:
    """``key`` (``help`` or ``valid``) of field ``name``: from ``cls`` or, where a subclass
    redeclared the field only to change its default, from the nearest base that has it."""
    for klass in getattr(cls, "__mro__", ()):
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and key in f.metadata:
            value = f.metadata[key]
            return Valid.from_data(value) if key == VALID and isinstance(value, dict) else value
    return None


def _is_integer(cls: type, name: str) -> bool:
    try:
        hint = typing.get_type_hints(cls).get(name)
    except Exception:  # noqa: BLE001 - unresolvable annotations: judge by nothing
        return False
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) is Union else [hint]
    return bool(args) and args[0] is int


def show(value: Any) -> str:
    """A value as the command line writes it (``null``, ``nan``, ``0.5``)."""
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return repr(value)
    return str(value)


def problem(cls: type, name: str, value: Any, key: str) -> Optional[str]:
    """The message refusing ``key=value`` for field ``name`` of ``cls``, None when valid
    (or undeclared; None is left to the field's type: OmegaConf refuses it for a
    non-Optional field)."""
    valid = field_meta(cls, name, VALID)
    if valid is None or value is None or valid.accepts(value):
        return None
    if valid.choices is not None:
        return f"{key}={value!r} is not a valid choice; valid choices: {list(valid.choices)}"
    return f"{key}={show(value)} is out of range: must be {valid.describe(_is_integer(cls, name))}"


def problems(config: Any, prefix: str = "") -> list[str]:
    """Messages for every declared field of the dataclass instance ``config`` whose value is
    out of its range, each naming ``<prefix><field>``, the value and the valid values."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return []
    cls = type(config)
    out = []
    for f in dataclasses.fields(config):
        message = problem(cls, f.name, getattr(config, f.name), f"{prefix}{f.name}")
        if message:
            out.append(message)
    return out


def check(config: Any, prefix: str = "") -> None:
    """Raise ``ValueError`` with every :func:`problems` message (none: return)."""
    found = problems(config, prefix)
    if found:
        raise ValueError("; ".join(found))


def describe_fields(cls: type) -> list[dict]:
    """Name, type, default, help and valid values of each field of ``cls`` (for ``--help``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in ("defaults",):
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)  # type: ignore[misc]
        valid = field_meta(cls, f.name, VALID)
        out.append({"name": f.name, "type": hints.get(f.name), "default": default,
                    "help": field_meta(cls, f.name, HELP) or "",
                    "valid": valid.describe(_is_integer(cls, f.name)) if valid else ""})
    return out
