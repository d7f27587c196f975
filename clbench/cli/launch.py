"""The one runner of ``clbench run``: a single run and each job of a sweep go through
:func:`execute` (validate, build, run, report in one line or print the record)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional


def refuse(problems: list[str]) -> int:
    """Print the reasons a config is refused (one line each) and return 2."""
    for problem in problems:
        print(f"clbench: error: {problem}", file=sys.stderr)
    return 2


def execute(cfg: Any, on_record: Optional[Callable[[dict], None]] = None) -> int:
    """Validate and run one composed config; user errors print one message and return 2.
    ``on_record``: called with ``{"path", "status"}`` of the run's record, where there is one."""
    from clbench.config.validate import check_config
    from clbench.errors import user_errors

    problems = check_config(cfg)  # every setting, wherever it came from, before anything is built
    if problems:
        return refuse(problems)
    from clbench.protocol.resuming import AlreadyComplete

    try:
        record, path = run_from_config(cfg)
    except AlreadyComplete as done:  # resume=auto of a config whose run is complete: skipped, not run again
        print(f"resume=auto: {done}", file=sys.stderr)
        if on_record is not None:
            on_record({"path": str(done.path.resolve()), "status": "complete", "skipped": "already complete"})
        return 0
    except user_errors() as err:
        print(f"clbench: error: {err}", file=sys.stderr)
        _print_log_locations(sys.stderr)
        return 2
    except BaseException as err:
        _print_log_locations(sys.stderr)  # a failed or interrupted run still has its W&B run
        if on_record is not None and getattr(err, "record_path", None):
            on_record({"path": str(Path(err.record_path).resolve()),
                       "status": "interrupted" if type(err).__name__ == "Interrupted" else "failed"})
        return _run_ended(err)
    if on_record is not None:
        on_record({"path": str(Path(path).resolve()), "status": record.status})
    from rich.console import Console

    from clbench.results.console import print_record

    console = Console()
    print_record(record, console)
    console.print(f"record: {path}", soft_wrap=True, markup=False, highlight=False)
    logs = record.environment.get("logs", {}) if isinstance(record.environment, dict) else {}
    for name, where in (logs.items() if isinstance(logs, dict) else []):
        if name != "WandbLogger":  # printed below, with the upload hint
            console.print(f"{name}: {where}", soft_wrap=True, markup=False, highlight=False)
    _print_log_locations(sys.stdout)
    return 0


def _run_ended(err: BaseException) -> int:
    """A run that stopped: SIGTERM / Ctrl-C (exit 143 / 130) or non-finite numbers (exit 1)
    in one line, naming the record (``err.record_path`` where the protocol attached it);
    any other error propagates with its traceback."""
    where = getattr(err, "record_path", None)
    saved = f"; the record (status {{}}) keeps the rows done so far: {where}" if where else \
        "; the record (status {}) keeps the rows done so far"
    if isinstance(err, KeyboardInterrupt) or type(err).__name__ == "Interrupted":
        print(f"clbench: run interrupted ({str(err) or 'Ctrl-C'}){saved.format('interrupted')}", file=sys.stderr)
        return 130 if isinstance(err, KeyboardInterrupt) else 143
    if isinstance(err, FloatingPointError):  # e.g. a non-finite loss (strategy.lr too high)
        print(f"clbench: run failed: {err}{saved.format('failed')}", file=sys.stderr)
        return 1
    raise err


def _print_log_locations(stream) -> None:
    """Say (once) where this process's W&B runs went, with ``wandb sync`` for offline ones."""
    module = sys.modules.get("clbench.loggers.wandb_logger")
    if module is None:
        return
    while module.FINISHED:
        print(module.location_line(module.FINISHED.pop(0)), file=stream, flush=True)





def run_from_config(cfg: Any, *, backbone_given: bool | None = None):
    """Check, build and run what ``cfg`` describes; return ``(record, path)``.

    The backbone is the scenario's default unless the strategy prefers another for this
    scenario (``Strategy.preferred_backbone``) and ``backbone=`` was not given on the
    command line (``backbone_given``; None: read Hydra's overrides where there are any)."""
    from omegaconf import OmegaConf

    from clbench import protocol
    from clbench.api.addon import build_addon
    from clbench.api.scenario import build_scenario
    from clbench.api.strategy import STRATEGIES
    from clbench.cli.debug import apply_debug
    from clbench.config import data_root, to_dict
    from clbench.loggers import build_loggers
    from clbench.models.backbones import BACKBONE_PRESETS
    from clbench.settings import settings_of

    strategy_cls = STRATEGIES.get(cfg.strategy.name)
    protocol.check_compatible(strategy_cls, cfg.scenario.kind, cfg.scenario.name)  # before any data is read
    settings = settings_of(cfg)
    protocol.resolve_device(settings.device)
    protocol.seed_everything(cfg.seed)
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=cfg.seed)
    scenario = apply_debug(cfg, scenario)  # debug=fast|overfit|profile: samples per experience, setup loops
    info = scenario.info_for(settings.val_fraction)
    backbone = OmegaConf.to_object(cfg.backbone)
    preferred = strategy_cls.preferred_backbone(info)
    if backbone_given is None:
        backbone_given = _backbone_overridden(cfg)
    if preferred and not backbone_given and preferred != backbone.name:
        if preferred not in BACKBONE_PRESETS:
            raise ValueError(f"strategy {cfg.strategy.name!r} prefers backbone {preferred!r}, which is not a preset; "
                             f"valid choices: {sorted(BACKBONE_PRESETS)}")
        backbone = BACKBONE_PRESETS[preferred]
        cfg = OmegaConf.merge(cfg, {"backbone": OmegaConf.structured(backbone)})
    config = to_dict(cfg)
    resume = resolve_resume(settings, config)  # before the strategy is built and prepared
    strategy = strategy_cls(OmegaConf.to_object(cfg.strategy), info, backbone, seed=cfg.seed)
    addon = build_addon(OmegaConf.to_object(cfg.addon), info, seed=cfg.seed) if "addon" in cfg else None
    loggers = build_loggers(cfg.logger, cfg.results_dir)
    return protocol.run(scenario, strategy, settings=settings, loggers=loggers, config=config, addon=addon,
                        data_root=data_root(cfg), resume=resume)


def resolve_resume(settings: Any, config: dict) -> Optional[Path]:
    """The checkpoint to continue from: ``resume=auto|RUN_ID|PATH`` (clbench.protocol.resuming.find),
    or ``auto`` for a job that SLURM requeued (``SLURM_RESTART_COUNT`` > 0: Submitit's
    preemption and time-limit handling) when ``resume`` is not set; None: a new run."""
    import os
    import sys

    from clbench.protocol import resuming

    wanted = settings.resume
    if wanted is None and _int(os.environ.get("SLURM_RESTART_COUNT")) > 0:
        wanted = "auto"
    if not wanted:
        return None
    if wanted == "auto":
        complete = resuming.find_complete(settings.results_dir, config)
        if complete is not None:
            raise resuming.AlreadyComplete(complete)
    found = resuming.find(str(wanted), settings.results_dir, config, force=bool(settings.resume_force))
    if found is None:
        print(f"resume={wanted}: no interrupted run of this config under {settings.results_dir}/checkpoints; "
              "starting a new run", file=sys.stderr)
    else:
        print(f"resuming from {found}", file=sys.stderr)
    return found


def _int(text: Optional[str]) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _backbone_overridden(cfg: Any) -> bool:
    """Whether ``backbone=`` (or a ``backbone.`` key) was among the explicit overrides."""
    from clbench.config import explicit_overrides

    overrides = explicit_overrides(cfg) or []
    return any(o.split("=", 1)[0].lstrip("+~").startswith("backbone") for o in overrides)
