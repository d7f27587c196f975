"""Build and run what a composed config describes (the core of ``clbench run``)."""
from __future__ import annotations


def run_from_config(cfg):
    """Check, build and run what ``cfg`` describes; return ``(record, path)``."""
    from omegaconf import OmegaConf

    from clbench import protocol
    from clbench.config import data_root, to_dict
    from clbench.loggers import build_loggers
    from clbench.scenario import build_scenario
    from clbench.strategy import STRATEGIES

    strategy_cls = STRATEGIES.get(cfg.strategy.name)
    protocol.check_compatible(strategy_cls, cfg.scenario.kind, cfg.scenario.name)  # before any data is read
    settings = protocol.RunSettings(
        seed=cfg.seed, device=cfg.device, val_fraction=cfg.val_fraction, eval_batch_size=cfg.eval_batch_size,
        results_dir=cfg.results_dir, progress=cfg.progress, count_flops=cfg.count_flops, num_workers=cfg.num_workers,
    )
    protocol.resolve_device(settings.device)
    protocol.seed_everything(cfg.seed)
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=cfg.seed)
    strategy = strategy_cls(
        OmegaConf.to_object(cfg.strategy), scenario.info, OmegaConf.to_object(cfg.backbone),
        seed=cfg.seed, data_root=data_root(cfg),
    )
    loggers = build_loggers(cfg.logger, cfg.results_dir)
    return protocol.run(scenario, strategy, settings=settings, loggers=loggers, config=to_dict(cfg))
