"""Build and run what a composed config describes (the core of ``clbench run``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


def run_from_config(cfg: Any, *, backbone_given: bool | None = None):
    """Check, build and run what ``cfg`` describes; return ``(record, path)``.

    The backbone is the scenario's default unless the strategy prefers another for this
    scenario (``Strategy.preferred_backbone``) and ``backbone=`` was not given on the
    command line (``backbone_given``; None: read Hydra's overrides where there are any)."""
    from omegaconf import OmegaConf

    from clbench import protocol
    from clbench.addon import build_addon
    from clbench.backbones import BACKBONE_PRESETS
    from clbench.config import data_root, to_dict
    from clbench.loggers import build_loggers
    from clbench.scenario import build_scenario
    from clbench.settings import settings_of
    from clbench.strategy import STRATEGIES

    strategy_cls = STRATEGIES.get(cfg.strategy.name)
    protocol.check_compatible(strategy_cls, cfg.scenario.kind, cfg.scenario.name)  # before any data is read
    settings = settings_of(cfg)
    protocol.resolve_device(settings.device)
    protocol.seed_everything(cfg.seed)
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=cfg.seed)
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
    """The checkpoint to continue from: ``resume=auto|RUN_ID|PATH`` (clbench.checkpoints.find),
    or ``auto`` for a job that SLURM requeued (``SLURM_RESTART_COUNT`` > 0: Submitit's
    preemption and time-limit handling) when ``resume`` is not set; None: a new run."""
    import os
    import sys

    from clbench import checkpoints

    wanted = settings.resume
    if wanted is None and _int(os.environ.get("SLURM_RESTART_COUNT")) > 0:
        wanted = "auto"
    if not wanted:
        return None
    found = checkpoints.find(str(wanted), settings.results_dir, config)
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
