"""Early validation of a run's settings: refuse a value outside its valid range before
anything is built, trained or even imported (torch takes seconds to load).

Valid ranges are declared on the config fields themselves (``clbench.fields.setting``:
the run settings', each strategy's, scenario's and add-on's); this module reads them.
Two passes, both cheap (this module imports nothing heavy):

- :func:`check_overrides` reads the command line's ``key=value`` overrides with Hydra's
  override parser, before the config is composed (so before the plugins, hence torch,
  are imported): ``strategy.epochs=0`` is refused in a fraction of a second. A
  ``strategy.<key>`` is checked against the field of the strategy (or each swept
  strategy) the overrides choose, read from the config index.
- :func:`check_config` checks the composed config, wherever a value came from (the
  command line, an ``experiment`` or ``debug`` file, a strategy's defaults).

A message names the key, the bad value and the valid range.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

from clbench import fields
from clbench.paths import CONF_DIR
from clbench.settings import RunSettings

_MISSING = object()
#: config groups whose options' fields declare ranges (``<group>.<field>=`` overrides)
GROUPS = ("strategy", "scenario", "addon", "backbone")
#: the option each group takes when the command line does not choose one
DEFAULT_OPTIONS = {"strategy": "naive", "scenario": "split_fmnist", "addon": "none"}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- the command line -----------------------------------------------------------------------

def _values(override: Any) -> Iterable[Any]:
    """The values an override sets: one, or each of a simple sweep (``0,1,2``, ``range(...)``)."""
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    if not override.is_sweep_override():
        return [override.value()]
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return [v for v in sweep.list if not hasattr(v, "list")]
    if isinstance(sweep, RangeSweep):
        return list(override.sweep_iterator())
    return []  # interval sweeps and the like: the composed config is checked per job


def _indexed_class(group: str, option: str) -> Optional[type]:
    """A stand-in of option ``option``'s config class built from the fresh config index
    (fields, types, declared ranges; no import), or None."""
    from clbench.config import index

    entry = index.entry(group, option)
    if entry is None or entry.get("fields") is None:
        return None
    return index.synthetic_class(entry)


def _is_bool_field(cls: type, name: str) -> bool:
    import typing

    try:
        hint = typing.get_type_hints(cls).get(name)
    except Exception:  # noqa: BLE001 - unresolvable annotations: judge by nothing
        return False
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else None
    return hint is bool


def _raw_problem(cls: type, name: str, value: Any, key: str) -> Optional[str]:
    """:func:`clbench.fields.problem` for a raw command-line value: a value of another type
    than the range speaks of is left to the config's type check, which names the type; a
    boolean field takes only true or false (OmegaConf would read ``2`` or ``yes`` as true)."""
    if value is not None and not isinstance(value, bool) and _is_bool_field(cls, name):
        return f"{key}={fields.show(value)} is not a boolean: must be true or false"
    valid = fields.field_meta(cls, name, fields.VALID)
    if valid is None or (valid.choices is None and not _is_number(value)):
        return None
    return fields.problem(cls, name, value, key)


def check_overrides(overrides: Iterable[str]) -> list[str]:
    """Messages for the out-of-range values among command-line overrides (``key=value``),
    including ``results_dir`` (see :func:`check_results_dir`). Overrides that do not
    parse, or keys without a declared range, are left to Hydra's composition."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import OverrideType
    except ImportError:  # pragma: no cover - Hydra is a dependency
        return []
    parser = OverridesParser.create()
    parsed: list[tuple[str, list[Any]]] = []
    for text in overrides:
        if text.startswith("-"):
            continue
        try:
            (override,) = parser.parse_overrides([text])
            if override.type == OverrideType.DEL or override.package:
                continue
            parsed.append((override.key_or_group, list(_values(override))))
        except Exception:  # noqa: BLE001 - Hydra will report what does not parse
            continue
    chosen = {g: [str(v) for k, vs in parsed if k == g for v in vs] or [DEFAULT_OPTIONS.get(g, "")] for g in GROUPS}
    if any(k in ("experiment", "debug") for k, _ in parsed):
        chosen = {g: [] for g in GROUPS}  # an experiment picks its own options: checked once composed
    problems: list[str] = []
    for key, values in parsed:
        head, _, leaf = key.partition(".")
        for value in values:
            problem = None
            if key in OPTIONAL_GROUPS and isinstance(value, str):
                problem = check_optional_group(key, value)
            elif key == "results_dir" and isinstance(value, str) and "${" not in value:
                problem = check_results_dir(value)
            elif not leaf and key in RunSettings.__dataclass_fields__:
                problem = _raw_problem(RunSettings, key, value, key)
            elif head in GROUPS and leaf and "." not in leaf:
                for option in chosen[head]:
                    cls = _indexed_class(head, option)
                    if cls is not None and leaf in cls.__dataclass_fields__:
                        problem = problem or _raw_problem(cls, leaf, value, key)
            if problem and problem not in problems:
                problems.append(problem)
    return problems


#: config groups that the primary config lists as ``optional``: Hydra runs the defaults
#: without a word when one of their names does not exist, so they are checked here
OPTIONAL_GROUPS = ("experiment", "debug")


def check_optional_group(group: str, name: str) -> Optional[str]:
    """A message if ``group=name`` names no config file under ``clbench/conf/<group>/``."""
    folder = CONF_DIR / group
    if (folder / f"{name}.yaml").is_file():
        return None
    choices = sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))
    return f"unknown {group} {name!r}; valid choices: {', '.join(choices)}"


def check_composition(overrides: list[str]) -> list[str]:
    """Compose the run config from the config index (``clbench.config.index.synthetic``:
    no plugin, no torch) and return why it is refused: an unknown strategy, scenario,
    backbone, logger or key, a value of the wrong type (the message the full composition
    would give, ``clbench.config.explain``) or a value out of range. Empty when it
    composes, or when there is no fresh index (the full composition will tell)."""
    from clbench.config import index
    from clbench.config.explain import explain_config_error
    from clbench.config.store import compose, forget

    if not index.is_fresh():
        return []
    with index.synthetic():
        try:
            cfg = compose(overrides)
        except Exception as err:  # noqa: BLE001 - Hydra/OmegaConf composition errors
            return [explain_config_error(err, list(overrides))]
        problems = check_config(cfg)
        forget(cfg)
    return problems


# -- the composed config ---------------------------------------------------------------------

def _get(node: Any, key: str) -> Any:
    try:
        if hasattr(node, "_get_node"):  # a DictConfig: read without resolving errors away
            from omegaconf import OmegaConf

            if key not in node:
                return _MISSING
            if OmegaConf.is_missing(node, key):
                return _MISSING
            return node[key]
        return node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
    except Exception:  # noqa: BLE001 - an interpolation that fails is Hydra's to report
        return _MISSING


def _node_class(group: str, node: Any) -> Optional[type]:
    """The dataclass a composed config node was made from; for a plain mapping, the
    indexed class of the option it names (``name``, else the group's default)."""
    try:
        from omegaconf import OmegaConf

        cls = OmegaConf.get_type(node)
    except Exception:  # noqa: BLE001 - a plain dict
        cls = None
    if isinstance(cls, type) and hasattr(cls, "__dataclass_fields__"):
        return cls
    name = _get(node, "name")
    return _indexed_class(group, name if isinstance(name, str) else DEFAULT_OPTIONS.get(group, ""))


def check_config(cfg: Any, *, results_dir: bool = True) -> list[str]:
    """Messages for every out-of-range setting of a composed run config (a DictConfig or
    a plain dict); with ``results_dir``, also whether run records can be written there."""
    problems: list[str] = []
    for name in RunSettings.__dataclass_fields__:  # the run settings (the top of the run config)
        value = _get(cfg, name)
        if value is not _MISSING:
            problems.append(fields.problem(RunSettings, name, value, name))
    for group in GROUPS:
        node = _get(cfg, group)
        cls = None if node is _MISSING or node is None else _node_class(group, node)
        if cls is None:
            continue
        for name in cls.__dataclass_fields__:
            value = _get(node, name)
            if value is not _MISSING:
                problems.append(fields.problem(cls, name, value, f"{group}.{name}"))
    if results_dir:
        where = _get(cfg, "results_dir")
        if isinstance(where, str):
            problems.append(check_results_dir(where))
    return [p for p in problems if p]


def check_results_dir(path: str) -> Optional[str]:
    """Why run records could not be written under ``path`` (None when they can)."""
    from clbench.results.records import RecordWriteError, check_writable

    try:
        check_writable(path)
    except RecordWriteError as err:
        return str(err)
    return None
