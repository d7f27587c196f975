"""``clbench reproduce <method>``: run a method's paper configs (``experiment=paper/<method>_*``)
as one Hydra multirun (any launcher: ``hydra/launcher=slurm`` included), then print each
result against the paper's target (``clbench.results.targets``).

Data and weights are checked up front with the loaders' own errors (which say what to
fetch and where to put it); a missing file stops everything before a run starts, so a
reduced setting never runs in place of the paper's. Overrides that change what is
learned are refused unless ``--allow-changes`` (then the records list them as deviations).
``--dry-run`` lists the runs and the missing files, and runs nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from clbench.paths import CONF_DIR

PAPER_DIR = CONF_DIR / "experiment" / "paper"
#: top-level override keys that say where and how runs execute, not what they learn
HARNESS_OVERRIDES = ("seed", "device", "data_root", "results_dir", "progress", "eval_batch_size", "count_flops",
                     "num_workers", "log_every", "logger", "resume", "resume_force", "keep_checkpoints", "hydra")


def paper_configs(method: Optional[str] = None) -> list[str]:
    """``paper/<name>`` of every paper config (of ``method``: files named ``<method>_*.yaml``)."""
    found = sorted(p.stem for p in PAPER_DIR.glob("*.yaml") if not p.stem.startswith("_"))
    return [f"paper/{n}" for n in found if method is None or n.split("_")[0] == method]


def methods() -> list[str]:
    """The methods that have paper configs."""
    return sorted({name.split("/")[1].split("_")[0] for name in paper_configs()})


def changing_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that would change a paper setting (anything but harness keys and launchers)."""
    out = []
    for arg in overrides:
        key = arg.split("=", 1)[0].lstrip("+~")
        if key.split(".")[0].split("/")[0] not in HARNESS_OVERRIDES:
            out.append(arg)
    return out


def missing_inputs(cfg: Any) -> list[str]:
    """What a composed paper config lacks, as the loaders say it (what to fetch, where):
    the backbone's weights, the scenario's data, auxiliary data sets named in the strategy."""
    from omegaconf import OmegaConf

    from clbench.api.auxdata import AUX_DATASETS
    from clbench.api.scenario import build_scenario
    from clbench.config import data_root
    from clbench.errors import user_errors
    from clbench.models.backbones import create_backbone

    problems: list[str] = []
    errors = user_errors() + (FileNotFoundError, ValueError)
    if cfg.backbone.weights != "none":
        try:
            create_backbone(OmegaConf.to_object(cfg.backbone), (3, 224, 224))
        except errors as err:
            problems.append(f"weights: {err}")
    root = data_root(cfg)
    scenario = None
    try:
        scenario = build_scenario(cfg.scenario, data_root=root, seed=int(cfg.seed))
    except errors as err:
        problems.append(f"data: {err}")
    for key, value in OmegaConf.to_container(cfg.strategy).items():
        if key.endswith("_source") and isinstance(value, str) and value in AUX_DATASETS.names():
            shape = tuple(scenario.input_shape) if scenario is not None and hasattr(scenario, "input_shape") else (3, 32, 32)
            try:
                AUX_DATASETS.get(value)(root, shape)
            except errors as err:
                problems.append(f"strategy.{key}={value}: {err}")
    return problems


def describe(name: str, cfg: Any) -> str:
    """One line per paper config: what it runs and its target."""
    from clbench.results.targets import parse_target

    target = parse_target(cfg.get("target"))
    aim = "no target" if target is None else (
        f"target {target.metric} {'(no number on the method page)' if target.value is None else target.value}"
        f" ±{target.tol}")
    return (f"experiment={name}: strategy={cfg.strategy.name} scenario={cfg.scenario.name} "
            f"backbone={cfg.backbone.name} ({cfg.backbone.weights}); {aim}")


def result_rows(records: Sequence[Any]) -> list[tuple[str, Any, Optional[float]]]:
    """(label, target, ours in percent) per record with a target, then the mean of each config over seeds."""
    from clbench.results.targets import TargetError, percent, row_verdict, target_of

    rows, groups = [], {}
    for record in sorted(records, key=lambda r: (str(r.scenario.get("name")), str(r.strategy.get("name")), r.seed)):
        try:
            target = target_of(record)
        except TargetError:  # a hand-edited target: the leaderboard names it; here it is left out
            continue
        if target is None:
            continue
        label = f"{record.strategy.get('name')} on {record.scenario.get('name')}"
        rows.append((f"{label} (seed {record.seed})", target, percent(record, target)))
        groups.setdefault(label, []).append(record)
    for label, group in groups.items():
        if len(group) > 1:
            found = row_verdict(group)
            rows.append((f"{label} (mean of {len(group)})", found.target, found.ours))
    return rows


def sweep_records(sweep_dir: Path) -> list[Path]:
    """The records a sweep's jobs wrote (their job markers name them; they may lie outside the folder)."""
    import json

    from clbench.cli.sweep import MARKER

    found = []
    for marker in sorted(Path(sweep_dir).glob(f"*/{MARKER}")):
        try:
            record = json.loads(marker.read_text()).get("record")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(record, str) and Path(record).is_file():
            found.append(Path(record))
    return found


def print_results(results_dir: Path, out: Any = None) -> int:
    """Print the target table of the complete records under ``results_dir`` (a results folder,
    or a sweep folder whose jobs wrote them elsewhere); the number of rows."""
    from clbench.results.records import RecordError, find, load
    from clbench.results.targets import render_table

    out = out or sys.stdout
    records = []
    for path in dict.fromkeys([*find(results_dir), *sweep_records(results_dir)]):
        try:
            record = load(path)
        except RecordError:
            continue
        if record.status == "complete":
            records.append(record)
    rows = result_rows(records)
    if rows:
        print(render_table(rows), file=out)
    else:
        print(f"no complete record with a paper target under {results_dir}", file=out)
    return len(rows)


def reproduce_command(args: list[str], run: Callable[[list[str]], int]) -> int:
    """``clbench reproduce METHOD [--dry-run] [--allow-changes] [key=value ...]``; ``run`` is
    ``clbench run``'s command (``clbench.cli.main.run_command``), which launches the multirun."""
    parser = argparse.ArgumentParser(
        prog="clbench reproduce",
        description="Run a method's paper configs (experiment=paper/<method>_*) as one Hydra multirun and print "
                    "each result against the paper's target. Extra key=value overrides go to every run "
                    "(seed=0,1,2, data_root=DIR, hydra/launcher=slurm, ...).")
    parser.add_argument("method", help=f"one of: {', '.join(methods())}")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and the missing files; run nothing")
    parser.add_argument("--allow-changes", action="store_true",
                        help="accept overrides that change the paper setting (recorded as deviations)")
    parser.add_argument("--results", type=Path, default=None,
                        help="only print the target table of the records under this folder (no run)")
    try:
        ns, overrides = parser.parse_known_args(args)
    except SystemExit as exit_:  # argparse printed the usage
        return int(exit_.code or 0)
    flags = [a for a in overrides if a.startswith("-")]
    if flags:
        print(f"clbench: error: unknown option(s) {flags}; valid: --dry-run, --allow-changes, --results DIR",
              file=sys.stderr)
        return 2
    names = paper_configs(ns.method)
    if not names:
        print(f"clbench: error: no paper configs for method {ns.method!r}; valid choices: {', '.join(methods())}",
              file=sys.stderr)
        return 2
    if ns.results is not None:
        return 0 if print_results(ns.results) else 1
    changing = changing_overrides(overrides)
    if changing and not ns.allow_changes:
        print(f"clbench: error: {' '.join(changing)} would change the paper setting (a reduced run is not a "
              "reproduction); pass --allow-changes to run it anyway (its records list the deviations), or use "
              "clbench run experiment=... for a reduced run", file=sys.stderr)
        return 2
    from clbench.config import compose, store_configs
    from clbench.config.explain import explain_config_error
    from clbench.results.targets import TargetError

    store_configs()
    # sweep lists and launcher choices are Hydra's: the configs are checked without them
    single = [o for o in overrides if "," not in o.split("=", 1)[-1] and not o.lstrip("+~").startswith("hydra")]
    missing: dict[str, list[str]] = {}
    for name in names:
        try:
            cfg = compose([f"experiment={name}", *single])
        except Exception as err:  # noqa: BLE001 - Hydra/OmegaConf composition errors
            print(f"clbench: error: experiment={name}: {explain_config_error(err, [f'experiment={name}', *single])}",
                  file=sys.stderr)
            return 2
        try:
            print(describe(name, cfg))
        except TargetError as err:
            print(f"clbench: error: experiment={name}: {err}", file=sys.stderr)
            return 2
        missing[name] = missing_inputs(cfg)
        for problem in missing[name]:
            print(f"  missing {problem}")
    if any(missing.values()):
        from clbench.config import data_root

        print(f"clbench reproduce {ns.method}: nothing was run: fetch what is missing above (data under data_root="
              f"{data_root(cfg)}; weights where the messages say), then run it again", file=sys.stderr)
        return 0 if ns.dry_run else 2
    if ns.dry_run:
        print(f"dry run: {len(names)} config(s) ready; nothing was run")
        return 0
    from clbench.cli import sweep

    code = run(["-m", "experiment=" + ",".join(names), *overrides])
    where = sweep.LAST_SWEEP.get("dir")
    if where:
        print(f"\nresults vs the papers' targets (clbench reproduce {ns.method} --results {where}):")
        print_results(Path(where))
    return code
