"""The config layer: Hydra config groups built from typed dataclasses (``store``), the
config index that knows them without importing the plugins (``index``), the registries'
index-aware finder (``finder``), the refusal of bad settings before anything is built
(``validate``, ``explain``). Importing it installs the finder."""
from clbench import registry as _registry
from clbench.config import finder as _finder
from clbench.config.store import (CONF_DIR, RunConfig, builtin_options, compose, data_root, default_data_root,
                                  explicit_overrides, forget, load_plugins, store_builtins, store_configs, to_dict)

if not isinstance(_registry.current_finder(), _finder.IndexFinder):
    _registry.set_finder(_finder.IndexFinder(store_builtins, builtin_options))


def __getattr__(name: str):
    if name == "BackboneConfig":  # re-exported lazily: clbench.models.backbones imports torch
        from clbench.models.backbones import BackboneConfig

        return BackboneConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RunConfig", "compose", "store_configs", "store_builtins", "builtin_options", "load_plugins", "data_root",
           "default_data_root", "to_dict", "explicit_overrides", "forget", "CONF_DIR"]
