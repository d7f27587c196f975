"""The run configuration in Hydra's ConfigStore, and composing it.

Groups: ``strategy/<name>`` and ``scenario/<name>`` (stored by their registrations),
``backbone/<name>`` and ``logger/<name>`` (stored here: ``clbench.loggers.LOGGER_PRESETS``;
several loggers at once with Hydra's list syntax, ``logger=[wandb,csv]``: each option
switches itself on in ``logger.use``, and the merged config runs them all). Choosing a scenario also
chooses its default backbone; ``backbone=...`` overrides it. Unknown keys and values
of the wrong type are refused by OmegaConf when the config is composed.

With a fresh config index (``clbench.config.index``) the options are placeholders until
Hydra loads one: a run imports only its own strategy's and scenario's modules. This
module imports neither torch nor a plugin.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from clbench import registry
from clbench.config import index as config_index
from clbench.loggers import LOGGER_PRESETS, LoggerConfig
from clbench.paths import CONF_DIR, default_data_root
from clbench.settings import RunSettings

if TYPE_CHECKING:  # re-exported lazily (module __getattr__ below): clbench.models.backbones imports torch
    from clbench.models.backbones import BackboneConfig


@dataclass
class RunConfig(RunSettings):
    """Top-level config of ``clbench run``: the harness settings (``RunSettings``, one
    definition shared with the protocol) plus data root and the config groups."""

    defaults: List[Any] = field(default_factory=lambda: [
        "_self_", {"backbone": "cnn28"}, {"logger": "wandb"}, {"strategy": "naive"}, {"scenario": "split_fmnist"},
        {"addon": "none"},
    ])
    data_root: Optional[str] = field(default=None, metadata={"harness": True,
                                                             "help": "default $CLBENCH_DATA or ~/.cache/clbench/data"})
    target: Optional[Any] = field(default=None, metadata={
        "harness": True, "help": "the paper's number a paper config is judged by: {metric, value, tol, source} "
                                 "(percent; clbench.results.targets); null: none"})
    strategy: Any = MISSING
    scenario: Any = MISSING
    backbone: Any = MISSING
    logger: LoggerConfig = MISSING  # typed here; its options are plain mappings (see store_builtins)
    addon: Any = MISSING


_stored = False


def store_configs() -> None:
    """Put the run config and every group option into Hydra's ConfigStore: with a fresh
    config index, options not imported yet as placeholders that Hydra's lookup imports
    (one module per option it loads); without one, by importing every plugin."""
    global _stored
    if _stored:
        return
    _stored = True
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    if config_index.install_placeholders(store_builtins=store_builtins, load_all=load_plugins):
        return
    store_builtins()
    load_plugins()  # strategies and scenarios store themselves on import


def load_plugins() -> None:
    """Import every plugin (through the registries' finder: with the config layer's, the
    config index is rewritten where it is stale)."""
    finder = registry.current_finder()
    if finder is not None:
        finder.load_all()


def store_builtins() -> None:
    """Store the backbone and logger presets and ``addon=none`` (imports torch)."""
    from clbench.api.addon import AddonConfig
    from clbench.models.backbones import BACKBONE_PRESETS

    cs = ConfigStore.instance()
    for name, preset in BACKBONE_PRESETS.items():
        cs.store(group="backbone", name=name, node=preset)
    for name, preset in LOGGER_PRESETS.items():  # mappings typed by RunConfig.logger, so that a list of options
        # merges (logger=[csv,tensorboard]) also from the config index; keys sorted as the index keeps them
        cs.store(group="logger", name=name, node=dict(sorted(dataclasses.asdict(preset).items())))
    cs.store(group="addon", name="none", node=AddonConfig(name="none"))


def builtin_options() -> dict[str, set[str]]:
    """The options :func:`store_builtins` stores, per group."""
    from clbench.models.backbones import BACKBONE_PRESETS

    return {"backbone": set(BACKBONE_PRESETS), "logger": set(LOGGER_PRESETS), "addon": {"none"}}


def forget(cfg: DictConfig) -> None:
    """Drop what :func:`compose` remembers about ``cfg`` (a config composed only to check it)."""
    _COMPOSED_WITH.pop(id(cfg), None)


def compose(overrides: list[str]) -> DictConfig:
    """Compose the run config from command-line style overrides (Hydra's parser)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    store_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    _COMPOSED_WITH[id(cfg)] = list(overrides)
    return cfg


#: the overrides each composed config was made from (what the user set explicitly)
_COMPOSED_WITH: dict[int, list[str]] = {}


def explicit_overrides(cfg: DictConfig) -> Optional[list[str]]:
    """The command-line overrides ``cfg`` was composed from, where known."""
    found = _COMPOSED_WITH.get(id(cfg))
    if found is not None:
        return found
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 - not composed here nor inside a Hydra app
        return None


def data_root(cfg: DictConfig) -> Path:
    return Path(cfg.data_root).expanduser() if cfg.data_root else default_data_root()


def to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def __getattr__(name: str) -> Any:
    if name == "BackboneConfig":
        from clbench.models.backbones import BackboneConfig

        return BackboneConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RunConfig", "BackboneConfig", "LoggerConfig", "compose", "store_configs", "load_plugins", "data_root",
           "to_dict", "default_data_root", "CONF_DIR"]
