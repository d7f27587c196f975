"""Early validation of a run's settings: refuse a value outside its valid range before
anything is built, trained or even imported (torch takes seconds to load).

Two passes, both cheap (this module imports nothing heavy):

- :func:`check_overrides` reads the command line's ``key=value`` overrides with Hydra's
  override parser, before the config is composed (so before the plugins, hence torch,
  are imported): ``strategy.epochs=0`` is refused in a fraction of a second.
- :func:`check_config` checks the composed config, wherever a value came from (the
  command line, an ``experiment`` or ``debug`` file, a strategy's defaults).

A message names the key, the bad value and the valid range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

_MISSING = object()


@dataclass(frozen=True)
class Rule:
    """A valid range: ``ok(value)`` and the text that describes it."""

    ok: Callable[[Any], bool]
    text: str
    optional: bool = False  # None (null) is valid


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _at_least(n: int, what: str) -> Rule:
    return Rule(lambda v: _int(v) and v >= n, f"an integer >= {n} ({what})")


#: Run settings (top level of the run config).
RUN_RULES = {
    "seed": _at_least(0, "the seed of class order, data order, split and initialisation"),
    "val_fraction": Rule(lambda v: _real(v) and 0 <= v < 1,
                         "a number in [0, 1) (the fraction of each experience's training data held out for validation)"),
    "eval_batch_size": _at_least(1, "samples per evaluation batch"),
    "num_workers": _at_least(0, "data loader worker processes; 0 loads in the main process"),
}
#: Fields of any strategy's config with these names.
#: A strategy whose recipe depends on the scenario (MULTI-LANE) declares these fields
#: Optional, with null meaning "the recipe for this scenario"; for a plain int/float field
#: OmegaConf already refuses null when the config is composed.
STRATEGY_RULES = {
    "epochs": Rule(lambda v: _int(v) and v >= 1, "an integer >= 1 (training epochs per experience), or null where "
                   "the strategy takes it from its recipe for the scenario", optional=True),
    "batch_size": Rule(lambda v: _int(v) and v >= 1, "an integer >= 1 (samples per training batch), or null where "
                       "the strategy takes it from its recipe for the scenario", optional=True),
    "lr": Rule(lambda v: _real(v) and v > 0, "a finite number > 0 (the learning rate), or null where the strategy "
               "takes it from its recipe for the scenario", optional=True),
    "buffer_size": _at_least(0, "samples kept in the replay buffer"),
    "iters": _at_least(0, "iterations"),
}
#: Fields of any scenario's config with these names.
SCENARIO_RULES = {
    "train_per_class": Rule(lambda v: _int(v) and v >= 1, "null (all) or an integer >= 1 (training images per class)",
                            optional=True),
    "test_per_class": Rule(lambda v: _int(v) and v >= 1, "null (all) or an integer >= 1 (test images per class)",
                           optional=True),
    "repeats": _at_least(1, "times each experience is repeated in the stream"),
    "blurry": Rule(lambda v: _real(v) and 0 <= v <= 0.5,
                   "a number in [0, 0.5] (the fraction of each boundary region that is mixed)"),
}


def rule_for(key: str) -> Optional[Rule]:
    """The rule of a dotted config key (``seed``, ``strategy.epochs``, ...), None if unchecked."""
    head, _, leaf = key.partition(".")
    if not leaf:
        return RUN_RULES.get(head)
    if "." in leaf:
        return None
    return {"strategy": STRATEGY_RULES, "scenario": SCENARIO_RULES}.get(head, {}).get(leaf)


def check_value(key: str, value: Any, *, typed: bool = True) -> Optional[str]:
    """The message refusing ``key=value``, or None when it is valid. With ``typed=False``
    (a raw command-line value) a value of another type is left to the config's type
    check, which names the expected type."""
    rule = rule_for(key)
    if rule is None:
        return None
    if value is None and rule.optional:
        return None
    if not typed and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return None
    if rule.ok(value):
        return None
    return f"{key}={_show(value)} is out of range: must be {rule.text}"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return repr(value)
    return str(value)


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


def check_overrides(overrides: Iterable[str]) -> list[str]:
    """Messages for the out-of-range values among command-line overrides (``key=value``),
    including ``results_dir`` (see :func:`check_results_dir`). Overrides that do not
    parse, or keys without a rule, are left to Hydra's composition."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import OverrideType
    except ImportError:  # pragma: no cover - Hydra is a dependency
        return []
    parser = OverridesParser.create()
    problems: list[str] = []
    for text in overrides:
        if text.startswith("-"):
            continue
        try:
            (override,) = parser.parse_overrides([text])
            if override.type == OverrideType.DEL or override.package:
                continue
            key = override.key_or_group
            values = list(_values(override))
        except Exception:  # noqa: BLE001 - Hydra will report what does not parse
            continue
        for value in values:
            if key in OPTIONAL_GROUPS and isinstance(value, str):
                problem = check_optional_group(key, value)
            elif key == "results_dir" and isinstance(value, str) and "${" not in value:
                problem = check_results_dir(value)
            else:
                problem = check_value(key, value, typed=False)
            if problem and problem not in problems:
                problems.append(problem)
    return problems


#: config groups that the primary config lists as ``optional``: Hydra runs the defaults
#: without a word when one of their names does not exist, so they are checked here
OPTIONAL_GROUPS = ("experiment", "debug")


def check_optional_group(group: str, name: str) -> Optional[str]:
    """A message if ``group=name`` names no config file under ``clbench/conf/<group>/``."""
    from pathlib import Path

    folder = Path(__file__).parent / "conf" / group
    if (folder / f"{name}.yaml").is_file():
        return None
    choices = sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))
    return f"unknown {group} {name!r}; valid choices: {', '.join(choices)}"


def check_composition(overrides: list[str], explain: Callable[[BaseException, list[str]], str]) -> list[str]:
    """Compose the run config from the config index (``clbench.config_index.synthetic``:
    no plugin, no torch) and return why it is refused: an unknown strategy, scenario,
    backbone, logger or key, a value of the wrong type (``explain`` turns Hydra's error
    into the message the full composition would give) or a value out of range. Empty
    when it composes, or when there is no fresh index (the full composition will tell)."""
    from clbench import config_index

    if not config_index.is_fresh():
        return []
    from clbench.config import compose, forget

    with config_index.synthetic():
        try:
            cfg = compose(overrides)
        except Exception as err:  # noqa: BLE001 - Hydra/OmegaConf composition errors
            return [explain(err, list(overrides))]
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


def check_config(cfg: Any, *, results_dir: bool = True) -> list[str]:
    """Messages for every out-of-range setting of a composed run config (a DictConfig or
    a plain dict); with ``results_dir``, also whether run records can be written there."""
    problems: list[str] = []
    for key in RUN_RULES:
        value = _get(cfg, key)
        if value is not _MISSING:
            problems.append(check_value(key, value))
    for group, rules in (("strategy", STRATEGY_RULES), ("scenario", SCENARIO_RULES)):
        node = _get(cfg, group)
        if node is _MISSING or node is None:
            continue
        for leaf in rules:
            value = _get(node, leaf)
            if value is not _MISSING:
                problems.append(check_value(f"{group}.{leaf}", value))
    if results_dir:
        where = _get(cfg, "results_dir")
        if isinstance(where, str):
            problems.append(check_results_dir(where))
    return [p for p in problems if p]


def check_results_dir(path: str) -> Optional[str]:
    """Why run records could not be written under ``path`` (None when they can)."""
    from clbench.records import RecordWriteError, check_writable

    try:
        check_writable(path)
    except RecordWriteError as err:
        return str(err)
    return None
