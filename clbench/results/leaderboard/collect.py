"""Load run records for a leaderboard: keep the complete ones, explain the rest, and
group runs that differ only in their seed (PROTOCOL.md, "Seeds and aggregation")."""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Union

from clbench.results.records import RecordError, RunRecord, find, liveness_note, load

#: Top-level keys of ``record.config`` that say where or how a run was executed, not
#: what was learned: two runs differing only in these are the same experiment.
NON_SCIENTIFIC_KEYS = (
    "seed", "device", "results_dir", "data_root", "progress", "eval_batch_size",
    "count_flops", "num_workers", "logger", "hydra", "resume", "resume_force", "keep_checkpoints",
    "target",  # a paper config's target number (clbench.results.targets): what a run is judged by, not what it learns
)
#: Nested keys of the same nature (where data come from, not which data).
NON_SCIENTIFIC_PATHS = ("scenario.download",)


@dataclass(frozen=True)
class Skipped:
    """A record file left out of the leaderboard, with the reason (path relative to the results dir)."""

    path: str
    reason: str


@dataclass
class Loaded:
    """A usable record and its path relative to the results dir."""

    path: str
    record: RunRecord


#: Folders below a results dir that hold no run records of it (W&B runs, Hydra sweeps).
NOT_RECORDS = ("wandb", "sweeps", "checkpoints")


def record_files(results_dir: Union[str, Path]) -> list[Path]:
    """Record files under ``results_dir/runs`` (the layout ``records.save`` writes), or,
    when it has no ``runs`` folder (e.g. ``results/runs/split_fmnist``), every ``*.json``
    below it except those of another results dir nested in it (such as
    ``results/reference/runs/...``: the committed reference runs never mix with a
    user's) and of :data:`NOT_RECORDS` folders."""
    root = Path(results_dir)
    if (root / "runs").is_dir():
        return find(root)
    swept = sweep_record_files(root)
    if swept is not None:
        return swept
    out = []
    for path in sorted(root.rglob("*.json")):
        parts = path.relative_to(root).parts[:-1]
        if "runs" in parts or any(p in NOT_RECORDS or p.startswith(".") for p in parts):
            continue
        out.append(path)
    return out


def sweep_record_files(sweep_dir: Path) -> "list[Path] | None":
    """The records a Hydra sweep's jobs wrote (``clbench.cli.sweep``: each job leaves a
    marker naming its record in its own folder), wherever they went; None if
    ``sweep_dir`` is not a sweep folder."""
    markers = sorted(sweep_dir.glob("*/clbench_job.json"))
    if not markers:
        return None
    out = []
    for marker in markers:
        try:
            where = json.loads(marker.read_text()).get("record")
        except (OSError, ValueError, AttributeError):
            continue
        if where and Path(where).is_file():
            out.append(Path(where))
    return sorted(set(out))


def load_records(results_dir: Union[str, Path]) -> tuple[list[Loaded], list[Skipped]]:
    """Every complete, well-formed record under ``results_dir``; each other file becomes
    a :class:`Skipped` with its reason. Never raises for a bad file."""
    root = Path(results_dir)
    loaded: list[Loaded] = []
    skipped: list[Skipped] = []
    for path in record_files(root):
        rel = Path(os.path.relpath(path, root)).as_posix()
        try:
            record = load(path)
        except RecordError as err:
            skipped.append(Skipped(rel, str(err).replace(str(path), "").lstrip(": ") or "unreadable"))
            continue
        except (OSError, TypeError, ValueError, RecursionError) as err:  # e.g. unexpected field types in the dataclass
            skipped.append(Skipped(rel, f"unreadable record ({type(err).__name__}: {err})"))
            continue
        try:
            problem = check_usable(record)
        except Exception as err:  # noqa: BLE001 - one odd record never costs the table
            problem = f"unusable record ({type(err).__name__}: {err})"
        if problem:
            skipped.append(Skipped(rel, problem))
        else:
            loaded.append(Loaded(rel, record))
    return loaded, skipped


def check_usable(record: RunRecord) -> str:
    """Why a schema-valid record cannot enter a leaderboard ('' when it can): not
    complete, a matrix that is not (steps+1) x T, a field of the wrong type anywhere the
    leaderboard reads (:func:`type_problems`) or a value outside its range
    (:func:`range_problems`). A matrix with only its first and last rows evaluated
    (``eval_rows=final``, :func:`final_row_only`) is usable: it is ranked on its final row."""
    if record.status != "complete":
        T = record.scenario.get("num_experiences", "?")
        done = f"{record.experiences_done}/{T if isinstance(T, (int, str)) else '?'} experiences done"
        error = f": {record.error}" if record.error else ""
        note = liveness_note(record)
        return f"status {record.status!r} ({note + '; ' if note else ''}{done}){error}"
    wrong = type_problems(record)
    if wrong:
        return "fields of the wrong type: " + "; ".join(wrong)
    matrix = record.matrix
    T = len(matrix[0]) if matrix and isinstance(matrix[0], list) else 0
    schedule = record.scenario.get("schedule") if isinstance(record.scenario, dict) else None
    steps = len(schedule) if isinstance(schedule, list) and schedule else T  # a recurring stream: a row per step
    if T == 0 or len(matrix) != steps + 1 or any(not isinstance(r, list) or len(r) != T for r in matrix):
        return "accuracy matrix is not (steps+1) x T"
    nonfinite = [p for p in (record.nonfinite or []) if isinstance(p, str) and p.startswith(("matrix", "metrics.ACC"))]
    if nonfinite:
        return f"non-finite values (saved as null) at {', '.join(nonfinite[:5])}"
    final = final_row_only(matrix)
    if not final and not all(_is_number(v) for r in matrix for v in r):
        return "accuracy matrix holds non-numeric entries"
    if not _is_number(record.metrics.get("ACC")):
        return "metrics lack a numeric ACC"
    union = record.union_accuracy
    if not all(_is_number(v) or (final and v is None and i < len(union) - 1) for i, v in enumerate(union)):
        return "union_accuracy holds non-numeric entries"
    bad = [k for k, v in record.metrics.items() if v is not None and not _is_number(v)]
    if bad:
        return f"non-numeric metrics {sorted(bad)}"
    out_of_range = range_problems(record)
    if out_of_range:
        more = f" (and {len(out_of_range) - 5} more)" if len(out_of_range) > 5 else ""
        return "values out of range: " + "; ".join(out_of_range[:5]) + more
    return ""


def final_row_only(matrix: Any) -> bool:
    """Whether ``matrix`` is what ``eval_rows=final`` records: rows 0 and T numeric, every
    row in between all null (not evaluated), at least one such row."""
    if not isinstance(matrix, list) or len(matrix) < 3 or not all(isinstance(r, list) for r in matrix):
        return False
    ends = matrix[0] + matrix[-1]
    return all(_is_number(v) for v in ends) and all(v is None for r in matrix[1:-1] for v in r)


#: The range of each metric the protocol defines (PROTOCOL.md): accuracies are fractions,
#: forgetting and transfers differences of fractions.
METRIC_RANGES = {
    **{k: (0.0, 1.0) for k in ("ACC", "AIA", "avg_mAP", "last_mAP", "CF1", "OF1", "routing_accuracy")},
    **{k: (-1.0, 1.0) for k in ("FGT", "BWT", "FWT", "INT")},
}
#: Slack for float rounding at a range's ends.
TOLERANCE = 1e-9


def range_problems(record: RunRecord) -> list[str]:
    """Each value the leaderboard reads that lies outside its range, as ``"path = v outside
    [lo, hi]"`` or ``"path = v is negative"``: accuracies (matrix, union_accuracy, metrics)
    outside [0, 1], forgetting and transfers outside [-1, 1], and negative seconds, FLOPs
    or parameter counts. Call on a record that :func:`type_problems` accepts."""
    out: list[str] = []

    def within(path: str, v: Any, lo: float, hi: float) -> None:
        if _is_number(v) and not lo - TOLERANCE <= v <= hi + TOLERANCE:
            out.append(f"{path} = {v:g} outside [{lo:g}, {hi:g}]")

    def nonnegative(path: str, v: Any) -> None:
        if _is_number(v) and v < -TOLERANCE:
            out.append(f"{path} = {v:g} is negative")

    for i, row in enumerate(record.matrix):
        for j, v in enumerate(row):
            within(f"matrix[{i}][{j}]", v, 0.0, 1.0)
    for i, v in enumerate(record.union_accuracy):
        within(f"union_accuracy[{i}]", v, 0.0, 1.0)
    for key, (lo, hi) in METRIC_RANGES.items():
        within(f"metrics.{key}", record.metrics.get(key), lo, hi)
    timing = record.timing
    for key in ("prepare_s", "encode_s"):
        nonnegative(f"timing.{key}", timing.get(key))
    for key in ("train_s", "eval_s", "flops"):
        for i, v in enumerate(timing.get(key) or []):
            nonnegative(f"timing.{key}[{i}]", v)
    for name, v in _phase_values(timing.get("phases")):
        nonnegative(f"timing.phases.{name}", v)
    nonnegative("compute.train_flops", record.compute.get("train_flops"))
    nonnegative("params.initial.total", (record.params.get("initial") or {}).get("total"))
    for i, item in enumerate(record.params.get("after") or []):
        nonnegative(f"params.after[{i}].total", item.get("total"))
    aux = record.extra.get("aux")
    for i, r in enumerate(aux if isinstance(aux, list) else [aux]):
        for key, v in (r or {}).items():
            if key.endswith("params"):  # parameter counts a method reports (e.g. TAME's nonzero_params)
                nonnegative(f"extra.aux{f'[{i}]' if isinstance(aux, list) else ''}.{key}", v)
    return out


def _phase_values(phases: Any) -> list[tuple[str, Any]]:
    """(name, seconds) of every entry of a ``timing.phases`` that :func:`_phases_ok` accepts."""
    items: list[tuple[str, Any]] = []
    for p in [phases] if isinstance(phases, dict) else phases if isinstance(phases, list) else []:
        if "name" in p or "phase" in p:
            items.append((str(p.get("name", p.get("phase"))), p.get("seconds", p.get("s"))))
        else:
            items.extend((str(k), v) for k, v in p.items())
    return [(name, x) for name, v in items for x in (v if isinstance(v, list) else [v])]


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _is_count(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def type_problems(record: RunRecord) -> list[str]:
    """Each field the leaderboard reads whose type is wrong, as ``"path should be X (got Y)"``.
    Optional fields may be absent or null; present ones must have the documented type."""
    out: list[str] = []

    def need(path: str, value: Any, ok: bool, what: str) -> bool:
        if not ok:
            out.append(f"{path} should be {what} (got {_kind(value)})")
        return ok

    for part in ("scenario", "strategy"):
        name = getattr(record, part).get("name")
        need(f"{part}.name", name, isinstance(name, str) and bool(name), "a non-empty string")
    kind = record.scenario.get("kind")
    need("scenario.kind", kind, kind is None or isinstance(kind, str), "a string")
    n = record.scenario.get("num_experiences")
    need("scenario.num_experiences", n, n is None or (isinstance(n, int) and not isinstance(n, bool)), "an integer")
    scfg = record.strategy.get("config")
    need("strategy.config", scfg, scfg is None or isinstance(scfg, dict), "an object")
    for key in ("scenario", "strategy", "backbone"):
        node = record.config.get(key)
        need(f"config.{key}", node, node is None or isinstance(node, dict), "an object")
    need("experiences_done", record.experiences_done,
         isinstance(record.experiences_done, int) and not isinstance(record.experiences_done, bool), "an integer")
    need("matrix", record.matrix, isinstance(record.matrix, list), "a list")
    if need("union_accuracy", record.union_accuracy, isinstance(record.union_accuracy, list), "a list"):
        pass
    if need("deviations", record.deviations, isinstance(record.deviations, list), "a list of strings"):
        bad = [d for d in record.deviations if not isinstance(d, str)]
        need("deviations[]", bad[0] if bad else None, not bad, "strings")
    if need("params", record.params, isinstance(record.params, dict), "an object"):
        initial = record.params.get("initial")
        if need("params.initial", initial, initial is None or isinstance(initial, dict), "an object"):
            total = (initial or {}).get("total")
            need("params.initial.total", total, _is_count(total), "a number")
        for key in ("after", "added"):
            items = record.params.get(key)
            if need(f"params.{key}", items, items is None or isinstance(items, list), "a list of objects"):
                for i, item in enumerate(items or []):
                    if not need(f"params.{key}[{i}]", item, isinstance(item, dict), "an object"):
                        break
                    if not need(f"params.{key}[{i}].total", item.get("total"), _is_count(item.get("total")), "a number"):
                        break
    if need("timing", record.timing, isinstance(record.timing, dict), "an object"):
        for key in ("prepare_s", "encode_s"):
            v = record.timing.get(key)
            need(f"timing.{key}", v, _is_count(v), "a number")
        for key in ("train_s", "eval_s", "flops"):
            v = record.timing.get(key)
            if need(f"timing.{key}", v, v is None or isinstance(v, list), "a list of numbers"):
                bad = [x for x in v or [] if not _is_count(x)]
                need(f"timing.{key}[]", bad[0] if bad else None, not bad, "numbers")
        phases = record.timing.get("phases")
        if phases is not None and not _phases_ok(phases):
            out.append(f"timing.phases should map phase names to seconds (got {_kind(phases)})")
    if need("compute", record.compute, isinstance(record.compute, dict), "an object"):
        v = record.compute.get("train_flops")
        need("compute.train_flops", v, _is_count(v), "a number")
    if need("extra", record.extra, isinstance(record.extra, dict), "an object"):
        aux = record.extra.get("aux")
        rows = aux if isinstance(aux, list) else [aux]
        if need("extra.aux", aux, aux is None or (isinstance(aux, (dict, list)) and all(
                r is None or isinstance(r, dict) for r in rows)), "an object of numbers (or a list of them, one per step)"):
            for i, r in enumerate(rows):
                bad = [k for k, v in (r or {}).items() if not _is_count(v)]
                where = f"extra.aux[{i}]" if isinstance(aux, list) else "extra.aux"
                if not need(f"{where}.{bad[0] if bad else ''}", (r or {}).get(bad[0]) if bad else None, not bad, "a number"):
                    break
    if need("metrics", record.metrics, isinstance(record.metrics, dict), "an object"):
        bad = [k for k, v in record.metrics.items() if not _is_count(v)]
        need(f"metrics.{bad[0] if bad else ''}", record.metrics.get(bad[0]) if bad else None, not bad, "a number or null")
    return out


def _phases_ok(phases: Any) -> bool:
    """``timing.phases``: {name: seconds or [seconds, ...]}, or a list (one entry per
    experience) of such dicts or of {"name": ..., "seconds": ...}."""
    def seconds(v: Any) -> bool:
        return _is_count(v) or (isinstance(v, list) and all(_is_count(x) for x in v))

    def entry(p: Any) -> bool:
        if not isinstance(p, dict):
            return False
        if "name" in p or "phase" in p:
            return isinstance(p.get("name", p.get("phase")), str) and seconds(p.get("seconds", p.get("s")))
        return all(isinstance(k, str) and seconds(v) for k, v in p.items())

    if isinstance(phases, dict):
        return entry(phases)
    if isinstance(phases, list):
        return all(entry(p) for p in phases)
    return False


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def config_key(record: RunRecord) -> dict:
    """The scientific configuration of a run: ``record.config`` (scenario, strategy,
    backbone, val_fraction, ...) minus :data:`NON_SCIENTIFIC_KEYS` (seed, device,
    results_dir, data_root, progress, eval_batch_size, count_flops, num_workers, logger,
    hydra, resume, resume_force, keep_checkpoints, target) and :data:`NON_SCIENTIFIC_PATHS`
    (scenario.download). Fields outside
    ``record.config`` (run_id, created, environment, timing, status) never enter it.
    A record without a run config (``protocol.run`` called directly) falls back to its
    scenario name and its strategy's config and backbone, plus ``eval_rows: final`` where
    its matrix says so (such a run has no AIA or FGT: it never merges with full ones)."""
    from clbench.settings import MISSING_MEANS, OFF_VALUES  # keys at their default are left out of a label

    config = {**MISSING_MEANS, **record.config} if record.config else {}  # an older record: what it ran with
    key = {k: v for k, v in config.items()
           if k not in NON_SCIENTIFIC_KEYS and not (k in OFF_VALUES and v == OFF_VALUES[k])}
    if isinstance(key.get("budget"), dict):  # a label names the limits that are set, not the unset ones
        key["budget"] = {k: v for k, v in key["budget"].items() if v is not None}
    key.setdefault("scenario", {"name": record.scenario.get("name")})
    key.setdefault("strategy", record.strategy.get("config") or {"name": record.strategy.get("name")})
    key.setdefault("backbone", record.strategy.get("backbone"))
    if final_row_only(record.matrix):
        key.setdefault("eval_rows", "final")
    for dotted in NON_SCIENTIFIC_PATHS:
        head, _, leaf = dotted.partition(".")
        if isinstance(key.get(head), dict) and leaf in key[head]:
            key[head] = {k: v for k, v in key[head].items() if k != leaf}
    return key


def config_id(key: dict) -> str:
    """A short stable id of a config key (sha1 of its canonical JSON)."""
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]


@dataclass
class Group:
    """The runs of one scenario and one configuration, differing only in the seed."""

    scenario: str
    strategy: str
    config: dict
    config_id: str
    runs: list[Loaded]

    @property
    def records(self) -> list[RunRecord]:
        return [r.record for r in self.runs]


def group_runs(loaded: Iterable[Loaded]) -> tuple[list[Group], list[Skipped]]:
    """Group runs by (scenario, config key). A seed run twice keeps its newest record
    (by ``created``, then run id); the older ones are returned as skipped."""
    groups: dict[tuple[str, str], Group] = {}
    for item in loaded:
        key = config_key(item.record)
        cid = config_id(key)
        scen = item.record.scenario["name"]
        group = groups.setdefault((scen, cid), Group(scen, item.record.strategy["name"], key, cid, []))
        group.runs.append(item)
    skipped: list[Skipped] = []
    for group in groups.values():
        by_seed: dict[int, list[Loaded]] = {}
        for item in group.runs:
            by_seed.setdefault(item.record.seed, []).append(item)
        kept = []
        sizes = [len(it.record.matrix[0]) for it in group.runs]
        common = max(set(sizes), key=lambda t: (sizes.count(t), t))
        for seed in list(by_seed):
            odd = [it for it in by_seed[seed] if len(it.record.matrix[0]) != common]
            skipped += [Skipped(it.path, f"{len(it.record.matrix[0])} experiences, where the other runs of its "
                                         f"configuration have {common}") for it in odd]
            by_seed[seed] = [it for it in by_seed[seed] if len(it.record.matrix[0]) == common]
            if not by_seed[seed]:
                del by_seed[seed]
        for seed in sorted(by_seed):
            runs = sorted(by_seed[seed], key=lambda it: (it.record.created, it.record.run_id, it.path))
            kept.append(runs[-1])
            skipped += [Skipped(it.path, f"seed {seed} run again in the same config: superseded by {runs[-1].path}")
                        for it in runs[:-1]]
        group.runs = kept
    ordered = sorted(groups.values(), key=lambda g: (g.scenario, g.strategy, g.config_id))
    return ordered, skipped


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts as ``{"a.b": "value"}`` with values in canonical JSON text."""
    if isinstance(config, dict):
        out: dict[str, str] = {}
        for k in sorted(config):
            out.update(flatten(config[k], f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): json.dumps(config, sort_keys=True, default=str)}
