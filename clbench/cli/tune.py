"""``clbench tune``: choose a method's settings on a held-out validation split of the first
experience(s) of a stream only (never a test set, never a later experience), by a grid
over the overrides given as sweeps (``strategy.lr=0.001,0.01``), and write the chosen
config as an experiment file recording ``tuning: tuned-on-first-task``.

    clbench tune experiment=reference/split_fmnist_er strategy.lr=0.0003,0.001,0.003 \\
        --experiences 1 --out clbench/conf/experiment/tuned/split_fmnist_er.yaml
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from clbench.errors import UserError

TUNED = "tuned-on-first-task"


class TuneError(UserError, ValueError):
    """A ``clbench tune`` request that cannot be carried out (named and explained)."""


def validation_scenario(scenario: Any, experiences: int, fraction: float, seed: int) -> Any:
    """The first ``experiences`` steps of ``scenario``, each experience's test set replaced
    by a seeded hold-out of ``fraction`` of its training set: what tuning may score on.
    The test sets are never touched (not even their size)."""
    import torch

    from clbench.api.data import split_validation
    from clbench.types import Experience

    if not 1 <= experiences <= len(scenario.steps):
        raise TuneError(f"--experiences {experiences} is out of range: the stream has {len(scenario.steps)} steps")
    if not 0 < fraction < 1:
        raise TuneError(f"--holdout {fraction} is out of range: must be a number in (0, 1)")
    generator = torch.Generator().manual_seed(10_007 * seed + 3)  # apart from the run's own splits
    chosen = list(dict.fromkeys(scenario.steps[:experiences]))
    exps = []
    for k, e in enumerate(chosen):
        exp = scenario.experiences[e]
        train, held_out = split_validation(exp.train, fraction, generator)
        if held_out is None:
            raise TuneError(f"--holdout {fraction} of experience {e + 1}'s {len(exp.train)} training samples is none")
        exps.append(Experience(k, train, held_out, tuple(exp.classes), exp.task_id))
    return replace(scenario, name=f"{scenario.name}-tune", experiences=exps, schedule=None,
                   description={**scenario.description, "tuning": f"validation hold-out ({fraction:g}) of the first "
                                f"{len(exps)} experience(s); no test data"})


def grid(points: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the swept keys' values, in the order given."""
    keys = list(points)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(points[k] for k in keys))]


def select(scenario: Any, make_strategy: Callable[[dict, Any], Any], points: Sequence[dict], settings: Any, *,
           experiences: int = 1, holdout: float = 0.2, metric: str = "ACC") -> tuple[dict, list[dict]]:
    """Run each point on :func:`validation_scenario` and return the best point (highest
    ``metric``; ties: the first) and every point's score."""
    from clbench import protocol

    tune_sc = validation_scenario(scenario, experiences, holdout, settings.seed)
    info = tune_sc.info_for(settings.val_fraction)
    scores = []
    for point in points:
        record, _ = protocol.run(tune_sc, make_strategy(point, info), settings=settings)
        value = record.metrics.get(metric)
        if value is None:
            raise TuneError(f"metric {metric!r} is not in the tuning runs' records; valid choices: "
                            f"{sorted(k for k, v in record.metrics.items() if isinstance(v, (int, float)))}")
        scores.append({"point": dict(point), metric: float(value)})
    best = max(range(len(scores)), key=lambda i: (scores[i][metric], -i))
    return dict(points[best]), scores


def experiment_text(cfg: dict, chosen: dict, scores: list[dict], *, experiences: int, holdout: float,
                    metric: str) -> str:
    """The chosen config as an experiment file (``clbench run experiment=...``)."""
    import yaml

    strategy = {k: v for k, v in cfg["strategy"].items() if k != "name"}
    scenario = {k: v for k, v in cfg["scenario"].items() if k not in ("name", "defaults")}
    body: dict[str, Any] = {"defaults": [{"override /scenario": cfg["scenario"]["name"]},
                                         {"override /strategy": cfg["strategy"]["name"]},
                                         {"override /backbone": cfg["backbone"]["name"]}],
                            "scenario": scenario, "strategy": strategy, "backbone":
                                {k: v for k, v in cfg["backbone"].items() if k != "name"},
                            "val_fraction": cfg.get("val_fraction"), "tuning": TUNED}
    from clbench.settings import OFF_VALUES

    for key in ("budget", "eval_every"):  # the evaluation settings the tuned runs used, where not off
        if key in cfg and cfg[key] != OFF_VALUES[key]:
            body[key] = cfg[key]
    lines = ["# @package _global_",
             (f"# Chosen by clbench tune: {metric} on a validation hold-out ({holdout:g}) of the first {experiences} "
              "experience(s) only; no test data was read."),
             "# " + "; ".join(f"{json.dumps(s['point'], sort_keys=True)}: {s[metric]:.4f}" for s in scores),
             f"# chosen: {json.dumps(chosen, sort_keys=True)}"]
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False)


def _split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[Any]]]:
    """Fixed overrides and the swept keys' values (Hydra's sweep syntax: ``a=1,2``, ``range``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from clbench.config.validate import _values

    parser = OverridesParser.create()
    fixed, swept = [], {}
    for text in overrides:
        (override,) = parser.parse_overrides([text])
        if override.is_sweep_override():
            swept[override.key_or_group] = list(_values(override))
        else:
            fixed.append(text)
    return fixed, swept


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value) if not isinstance(value, str) else value}"


def tune_command(args: list[str]) -> int:
    """``clbench tune [key=value ...] KEY=V1,V2 ... [--experiences K] [--holdout F] [--metric M] --out FILE``."""
    parser = argparse.ArgumentParser(prog="clbench tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="run overrides; those with several values (a,b) form the grid")
    parser.add_argument("--experiences", type=int, default=1, help="the first K experiences are tuned on (default 1)")
    parser.add_argument("--holdout", type=float, default=0.2, help="fraction of their training data held out (0.2)")
    parser.add_argument("--metric", default="ACC", help="record metric to maximise on the hold-out (ACC)")
    parser.add_argument("--out", required=True, help="the experiment file to write (YAML)")
    ns = parser.parse_args(args)
    try:
        return _tune(ns)
    except UserError as err:
        print(f"clbench: error: {err}", file=sys.stderr)
        return 2


def _tune(ns: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from clbench import protocol
    from clbench.api.scenario import build_scenario
    from clbench.api.strategy import STRATEGIES
    from clbench.config import compose, data_root, to_dict
    from clbench.settings import settings_of

    fixed, swept = _split_overrides(ns.overrides)
    if not swept:
        raise TuneError("nothing to tune: give at least one key with several values, e.g. strategy.lr=0.001,0.01")
    base = compose(fixed)
    settings = settings_of(base)
    scenario = build_scenario(OmegaConf.to_object(base.scenario), data_root=data_root(base), seed=base.seed)
    points = grid(swept)
    work = Path(tempfile.mkdtemp(prefix="clbench-tune-"))

    def make(point: dict, info: Any) -> Any:
        cfg = compose(fixed + [_override(k, v) for k, v in point.items()])
        cls = STRATEGIES.get(cfg.strategy.name)
        protocol.seed_everything(cfg.seed)
        return cls(OmegaConf.to_object(cfg.strategy), info, OmegaConf.to_object(cfg.backbone), seed=cfg.seed)

    run_settings = replace(settings, results_dir=str(work), resume=None)
    chosen, scores = select(scenario, make, points, run_settings, experiences=ns.experiences, holdout=ns.holdout,
                            metric=ns.metric)
    cfg = to_dict(compose(fixed + [_override(k, v) for k, v in chosen.items()]))
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from clbench.results.records import atomic_file

    with atomic_file(out) as f:
        f.write(experiment_text(cfg, chosen, scores, experiences=ns.experiences, holdout=ns.holdout,
                                metric=ns.metric))
    for s in scores:
        print(f"{json.dumps(s['point'], sort_keys=True)}: {ns.metric} {s[ns.metric]:.4f}")
    print(f"chosen {json.dumps(chosen, sort_keys=True)}; experiment file: {out} (tuning runs' records: {work})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - `python -m clbench.cli.tune`
    return tune_command(list(sys.argv[1:] if argv is None else argv))
