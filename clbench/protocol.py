"""The evaluation protocol: the only loop over experiences (PROTOCOL.md).

For each experience the learner is trained on what the scenario lets it see, then
every experience's test split is evaluated (row i of the accuracy matrix); a row 0 is
evaluated before any training. After each experience the record is saved (status
"running"), so a crash loses nothing already computed.
"""
from __future__ import annotations

import datetime as _dt
import platform
import resource
import subprocess
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from clbench import metrics, records
from clbench.backbones import Backbone, count_parameters
from clbench.data import split_validation
from clbench.evaluation import EVALUATORS
from clbench.features import encode
from clbench.progress import PhaseProgress
from clbench.records import RunRecord
from clbench.scenario import Scenario
from clbench.strategy import Strategy
from clbench.types import ExperienceInfo, KINDS, VISIBLE_THINGS
from clbench.view import LearnerView, make_batch


class IncompatibleError(ValueError):
    """A strategy paired with a scenario it cannot run on (refused before training)."""


@dataclass
class RunSettings:
    """Harness settings of one run (not the method's or the scenario's)."""

    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.1
    eval_batch_size: int = 512
    results_dir: str = "results"
    progress: bool = True
    count_flops: bool = False
    num_workers: int = 0


def check_compatible(strategy_cls: type[Strategy], kind: str, scenario_name: str = "?") -> None:
    """Refuse a pairing whose scenario hides something the strategy needs, or whose
    family the strategy does not support; the message names both and the choices."""
    from clbench.types import VISIBILITY_BY_KIND

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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}; valid choices: 'auto', 'cpu', 'cuda', 'cuda:N'")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (the strategy and data order use their own generators)."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(
    scenario: Scenario,
    strategy: Strategy,
    *,
    settings: RunSettings,
    loggers: Sequence[Any] = (),
    config: Optional[dict] = None,
    run_id: Optional[str] = None,
) -> tuple[RunRecord, Path]:
    """Train ``strategy`` on ``scenario`` under the protocol; return the record and its path."""
    check_compatible(type(strategy), scenario.kind, scenario.name)
    evaluator = EVALUATORS.get(scenario.kind)
    device = resolve_device(settings.device)
    strategy.to(device)
    vis = scenario.visibility
    generator = torch.Generator().manual_seed(settings.seed)
    T = len(scenario.experiences)

    record = _new_record(scenario, strategy, settings, config or {}, run_id, device)
    path = records.record_path(settings.results_dir, record)
    for lg in loggers:
        _safely(lg, "start", record)

    try:
        with PhaseProgress(settings.progress) as progress:
            t0 = time.perf_counter()
            strategy.prepare()
            record.timing["prepare_s"] = time.perf_counter() - t0
            encoder = strategy.frozen_encoder()
            t0 = time.perf_counter()
            data = _prepare_data(scenario, settings, generator, encoder, device)
            record.timing["encode_s"] = time.perf_counter() - t0 if encoder is not None else 0.0

            params_before = count_parameters(strategy)
            record.params = {"initial": params_before, "after": [], "added": []}
            row = _evaluate(strategy, scenario, evaluator, 0, data["test"], device, settings, progress)
            record.matrix.append(row.accuracy)
            record.extra.setdefault("rows", []).append(row.extra)
            record.timing.update(train_s=[], eval_s=[], flops=[])

            for i, exp in enumerate(scenario.experiences):
                t0 = time.perf_counter()
                with progress.phase(f"train {i + 1}/{T}") as advance, _flop_counter(settings.count_flops) as flops:
                    strategy.train()
                    if vis.boundaries:
                        view = LearnerView(
                            data["train"][i], data["validation"][i],
                            task_id=exp.task_id if vis.task_id_train else None,
                            device=device, generator=generator, on_batch=advance, num_workers=settings.num_workers,
                        )
                        strategy.begin_experience(
                            ExperienceInfo(i, tuple(exp.classes), exp.task_id if vis.task_id_train else None)
                        )
                        strategy.train_experience(view)
                        strategy.end_experience()
                    else:
                        bs = strategy.config.batch_size
                        for tensors in scenario.stream(i, bs, generator, data["train"]):
                            strategy.observe(make_batch(tensors, None, device))
                            if advance is not None:
                                advance(len(tensors[0]))
                _sync(device)
                record.timing["train_s"].append(time.perf_counter() - t0)
                record.timing["flops"].append(flops.total if settings.count_flops else None)

                t0 = time.perf_counter()
                row = _evaluate(strategy, scenario, evaluator, i + 1, data["test"], device, settings, progress)
                record.timing["eval_s"].append(time.perf_counter() - t0)
                record.matrix.append(row.accuracy)
                record.union_accuracy.append(row.union_accuracy)
                record.extra["rows"].append(row.extra)

                counts = count_parameters(strategy)
                record.params["after"].append(counts)
                prev = record.params["after"][-2] if i > 0 else params_before
                record.params["added"].append({k: counts[k] - prev[k] for k in counts})
                record.experiences_done = i + 1
                _update_metrics(record, scenario.kind, evaluator)
                record.compute["peak_memory_bytes"] = _peak_memory(device)
                records.save(record, settings.results_dir)
                for lg in loggers:
                    _safely(lg, "log_row", i + 1, row.accuracy, record)
    except BaseException as err:
        record.status = "failed"
        record.error = f"{type(err).__name__}: {err}"
        records.save(record, settings.results_dir)
        for lg in loggers:
            _safely(lg, "finish", record)
        raise

    record.status = "complete"
    record.params["backbone"] = _backbone_params(strategy)
    record.strategy["details"] = _plain(strategy.describe())
    for lg in loggers:
        where = _safely(lg, "finish", record)
        if where:
            record.environment.setdefault("logs", {})[type(lg).__name__] = where
    records.save(record, settings.results_dir)
    return record, path


def _prepare_data(scenario: Scenario, settings: RunSettings, generator: torch.Generator, encoder, device) -> dict:
    """Seeded train/validation splits and test sets; encoded once where the strategy has a frozen encoder."""
    train, validation, test = [], [], []
    for exp in scenario.experiences:
        tr, val = split_validation(exp.train, settings.val_fraction, generator) if scenario.visibility.boundaries else (exp.train, None)
        train.append(tr)
        validation.append(val)
        test.append(exp.test)
    if encoder is not None:
        encoder.to(device)
        enc = lambda d: None if d is None else encode(encoder, d, device=device, batch_size=settings.eval_batch_size)
        train, validation, test = [enc(d) for d in train], [enc(d) for d in validation], [enc(d) for d in test]
    return {"train": train, "validation": validation, "test": test}


def _evaluate(strategy, scenario, evaluator, step, test_sets, device, settings, progress):
    strategy.eval()
    strategy.before_eval()
    total = sum(len(d) for d in test_sets)
    with progress.phase(f"eval {step}/{len(scenario.experiences)}", total=total) as advance:

        def predict(x, task):
            out = strategy.predict(x, task)
            if advance is not None:
                advance(len(x))
            return out

        with torch.no_grad():
            row = evaluator(predict, scenario, step, test_sets, device=device, batch_size=settings.eval_batch_size)
    strategy.train()
    return row


def _update_metrics(record: RunRecord, kind: str, evaluator) -> None:
    """Metrics of the matrix so far; complete once every experience is done. An
    evaluator with ``extra_metrics(row_extras)`` (multi-label: avg/last mAP, CF1, OF1)
    adds its family's metrics from the extras of rows 1..done."""
    done = record.experiences_done
    partial = [r[:done] for r in record.matrix[: done + 1]]
    record.metrics = metrics.summarize(partial, record.union_accuracy, kind)
    extra_metrics = getattr(evaluator, "extra_metrics", None)
    if extra_metrics is not None:
        record.metrics.update(extra_metrics(record.extra["rows"][1:]))
    record.forgetting_matrix = metrics.forgetting_matrix(partial)


class _flop_counter:
    """FlopCounterMode when asked for, else nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.total, self._mode = enabled, None, None

    def __enter__(self):
        if self.enabled:
            from torch.utils.flop_counter import FlopCounterMode

            self._mode = FlopCounterMode(display=False)
            self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        if self._mode is not None:
            self._mode.__exit__(*exc)
            self.total = int(self._mode.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _backbone_params(strategy: Strategy) -> Optional[dict]:
    for m in strategy.modules():
        if isinstance(m, Backbone):
            return {**count_parameters(m), "weights_source": m.weights_source}
    return None


def _safely(logger: Any, method: str, *args: Any) -> Any:
    """Call a logger hook; a logger failure warns and never stops the run."""
    try:
        return getattr(logger, method)(*args)
    except Exception as err:  # noqa: BLE001 - loggers are best effort by design
        warnings.warn(f"{type(logger).__name__}.{method} failed: {type(err).__name__}: {err}", RuntimeWarning)
        return None


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(obj, DictConfig):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return obj


def _new_record(scenario: Scenario, strategy: Strategy, settings: RunSettings, config: dict, run_id, device) -> RunRecord:
    now = _dt.datetime.now(_dt.timezone.utc)
    run_id = run_id or f"{now:%Y%m%dT%H%M%S}-s{settings.seed}-{uuid.uuid4().hex[:6]}"
    deviations = list(strategy.deviations()) + list(scenario.description.get("deviations", []))
    if not scenario.visibility.boundaries and "epochs" in _plain(strategy.config):
        deviations.append(f"epochs ignored: the task-agnostic stream repeats each experience {scenario.repeats}x")
    return RunRecord(
        run_id=run_id,
        created=now.isoformat(timespec="seconds"),
        seed=settings.seed,
        scenario={
            "name": scenario.name, "kind": scenario.kind, "visibility": asdict(scenario.visibility),
            "num_experiences": len(scenario.experiences), "num_classes": scenario.num_classes,
            "class_order": list(scenario.class_order), "class_names": scenario.class_names,
            "experience_classes": [list(e.classes) for e in scenario.experiences],
            "train_sizes": [len(e.train) for e in scenario.experiences],
            "test_sizes": [len(e.test) for e in scenario.experiences],
            "description": scenario.description, "repeats": scenario.repeats,
        },
        strategy={
            "name": getattr(strategy, "name", type(strategy).__name__), "config": _plain(strategy.config),
            "backbone": _plain(strategy.backbone_config), "deviations": strategy.deviations(),
        },
        config=config,
        matrix=[],
        deviations=deviations,
        environment=_environment(device),
        compute={},
        timing={},
    )


def _environment(device: torch.device) -> dict:
    import clbench

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("torchvision", "hydra", "wandb"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            pass
    return {
        "clbench_version": clbench.__version__,
        "git_sha": _git_sha(),
        "versions": versions,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "host": platform.node(),
    }


def _git_sha() -> Optional[str]:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
