"""The run record's bookkeeping: a new or resumed record, the environment it ran in,
the metrics of the matrix so far, and plain-data conversions for it."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import socket
import subprocess
import uuid
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from clbench.models.backbones import Backbone, count_parameters
from clbench.results import metrics
from clbench.results.records import RunRecord
from clbench.settings import RunSettings


def record_name(strategy: Any, addon: Any = None) -> str:
    """``<strategy>`` or ``<strategy>+<addon>``: the row's name in records and leaderboards."""
    name = getattr(strategy, "name", type(strategy).__name__)
    return f"{name}+{addon.name}" if addon is not None else name


def plain(obj: Any) -> Any:
    """A dataclass or DictConfig as plain data; anything else as it is."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(obj, DictConfig):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return obj


def plain_numbers(values: Any) -> dict:
    """A strategy's ``metrics()`` with tensors as numbers or lists."""
    out = {}
    for k, v in dict(values or {}).items():
        if isinstance(v, torch.Tensor):
            v = v.item() if v.numel() == 1 else v.tolist()
        out[str(k)] = v
    return out


def new_record(scenario: Any, strategy: Any, settings: RunSettings, config: dict, run_id: Optional[str],
               device: torch.device, addon: Any = None) -> RunRecord:
    """The record of a new run: what runs, on what, with which deviations from the paper."""
    now = _dt.datetime.now(_dt.timezone.utc)
    run_id = run_id or f"{now:%Y%m%dT%H%M%S}-s{settings.seed}-{uuid.uuid4().hex[:6]}"
    deviations = list(strategy.deviations()) + list(scenario.description.get("deviations", []))
    if not scenario.visibility.boundaries and "epochs" in plain(strategy.config):
        deviations.append(f"epochs ignored: the task-agnostic stream repeats each experience {scenario.repeats}x")
    if scenario.visibility.boundaries and settings.val_fraction > 0 and strategy.paper_defaults \
            and not strategy.uses_validation:
        deviations.append(f"trained on {1 - settings.val_fraction:.0%} of each experience (val_fraction="
                          f"{settings.val_fraction} held out; the paper trains on all of it and selects nothing on it)")
    if addon is not None:
        deviations += addon.deviations()
    if scenario.augmentation != "none" and strategy.frozen_encoder() is not None:
        deviations.append(f"no training augmentation ({scenario.augmentation}): the frozen encoder's features are "
                          "computed once per image")
    name = getattr(strategy, "name", type(strategy).__name__)
    info = {
        "name": record_name(strategy, addon), "base": name,
        "config": plain(strategy.config), "backbone": plain(strategy.backbone_config),
        "deviations": strategy.deviations(),
        "tuning": tuning_protocol(strategy, settings),
    }
    if addon is not None:
        info["addon"] = {"name": addon.name, "config": plain(addon.config)}
    return RunRecord(
        run_id=run_id,
        created=now.isoformat(timespec="seconds"),
        seed=settings.seed,
        scenario={
            "name": scenario.name, "kind": scenario.kind, "visibility": asdict(scenario.visibility),
            "num_experiences": len(scenario.experiences), "num_classes": scenario.num_classes,
            "class_order": list(scenario.class_order), "class_names": scenario.class_names,
            "experience_classes": [list(e.classes) for e in scenario.experiences],
            "schedule": scenario.steps, "train_sizes": [len(e.train) for e in scenario.experiences],
            "test_sizes": [len(e.test) for e in scenario.experiences], "stream_size": scenario.stream_size(
                settings.val_fraction), "augmentation": scenario.augmentation,
            "description": scenario.description, "repeats": scenario.repeats,
        },
        strategy=info,
        config=config,
        matrix=[],
        deviations=deviations,
        environment=environment(device),
        compute={},
        timing={},
    )


def tuning_protocol(strategy: Any, settings: RunSettings) -> str:
    """How the method's settings were chosen: ``settings.tuning`` where the run says so, else
    ``paper`` for a paper recipe run as published (no deviation), ``ours`` otherwise."""
    if getattr(settings, "tuning", None):
        return settings.tuning
    return "paper" if getattr(strategy, "paper_defaults", False) and not strategy.deviations() else "ours"


def resumed_record(payload: dict, config: dict, source: Path) -> RunRecord:
    """The record saved with a checkpoint, made the live record of this process again."""
    record = RunRecord.from_dict(json.loads(payload["record"]), str(source))
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record.extra.setdefault("resumed", []).append({"at": now, "from_step": int(payload["step"]),
                                                   "checkpoint": str(source)})
    record.config = config  # execution-only keys (resume, results_dir, ...) may differ; nothing else does
    record.status, record.error, record.pid, record.host = "running", None, os.getpid(), socket.gethostname()
    return record


def environment(device: torch.device) -> dict:
    """Versions, git commit, device and host of this process."""
    import clbench

    from importlib import metadata

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod, dist in (("torchvision", "torchvision"), ("hydra", "hydra-core"), ("wandb", "wandb")):
        try:  # the installed version, without importing the package (torchvision + wandb: 0.4-1.5 s)
            versions[mod] = metadata.version(dist)
        except Exception:  # noqa: BLE001 - optional
            pass
    return {
        "clbench_version": clbench.__version__,
        "git_sha": git_sha(),
        "versions": versions,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "host": platform.node(),
    }


def git_sha() -> Optional[str]:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def update_metrics(record: RunRecord, scenario: Any, evaluator: Any) -> None:
    """Metrics of the matrix so far (columns = experiences seen so far, rows = steps
    done); an evaluator with ``extra_metrics(row_extras)`` (multi-label: avg/last mAP,
    CF1, OF1) adds its family's metrics from the extras of rows 1..done."""
    done = record.experiences_done
    steps = scenario.steps[:done]
    seen = list(dict.fromkeys(steps))
    first = [steps.index(e) + 1 for e in seen]
    partial = [[row[e] for e in seen] for row in record.matrix[: done + 1]]
    if any(v is None for row in partial for v in row):  # eval_rows=final: only the last row exists
        last = partial[-1]
        record.metrics = {"ACC": float(np.mean(last)) if last and None not in last else None}
        return
    record.metrics = metrics.summarize_schedule(partial, record.union_accuracy, scenario.kind, first)
    extra_metrics = getattr(evaluator, "extra_metrics", None)
    if extra_metrics is not None:
        record.metrics.update(extra_metrics(record.extra["rows"][1:]))
    routing = [r for r in record.extra.get("routing", []) if r]
    if routing:
        record.metrics["routing_accuracy"] = routing[-1]["accuracy"]
    record.forgetting_matrix = metrics.forgetting_matrix_schedule(partial, first)
    online = record.extra.get("online")
    if online and online.get("steps"):  # eval_every: the curve inside experiences
        ends = list(online.get("end_steps", [])) + [None] * len(record.matrix[0])
        by_column: list = [None] * len(record.matrix[0])
        for k, e in enumerate(steps):  # a column's training ends at the end of its last step so far
            by_column[e] = ends[k]
        record.metrics.update(metrics.online_metrics(online["steps"], online["acc"], by_column))


def parameter_counts(strategy: Any) -> dict[str, int]:
    """The learner's parameters (total, trainable) and buffer elements, without its stored
    frozen copies (a teacher, ``Strategy.frozen_copies``), whose parameters are counted
    apart as ``frozen_copies`` where there are any."""
    copies = strategy.frozen_copies() if hasattr(strategy, "frozen_copies") else {}
    counts = count_parameters(strategy)
    if copies:
        inner = [count_parameters(m) for m in copies.values()]
        counts = {k: v - sum(c[k] for c in inner) for k, v in counts.items()}
        counts["frozen_copies"] = sum(c["total"] for c in inner)
    return counts


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def backbone_params(strategy: Any) -> Optional[dict]:
    for m in strategy.modules():
        if isinstance(m, Backbone):
            return {**count_parameters(m), "weights_source": m.weights_source}
    return None


def plan_lines(scenario: Any, strategy: Any, settings: RunSettings, record: RunRecord) -> list[str]:
    """What the run will do, said before it does it (a paper recipe can mean hours)."""
    s, sc = strategy, scenario
    bs, epochs = s.config.batch_size, getattr(s.config, "epochs", 1)
    size = sc.stream_size(settings.val_fraction)
    passes = epochs if sc.visibility.boundaries else 1
    steps = sum(-(-n // bs) for n in sc.train_sizes(settings.val_fraction)) * passes
    if not sc.visibility.boundaries:
        steps = -(-size // bs)
    name = record.strategy["name"]
    lines = [f"plan: {name} on {sc.name} ({sc.kind}): {len(sc.steps)} experiences, {size:,} training samples, "
             f"{passes} epoch(s) each, batch {bs}: about {steps:,} optimisation steps; evaluation after each "
             f"experience on up to {sum(len(e.test) for e in sc.experiences):,} test samples"]
    if record.deviations:
        lines.append("deviations from the paper: " + "; ".join(record.deviations[:4])
                     + (" ..." if len(record.deviations) > 4 else ""))
    if steps > 20_000:
        lines.append("this is a long run (the method's paper recipe); for a quick look: debug=fast, or "
                     "strategy.epochs=1 scenario.train_per_class=500")
    return lines
