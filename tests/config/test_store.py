"""Composing the run config (clbench.config.store): every registered strategy's config composes
into its own config class, with its defaults."""
from __future__ import annotations

import pytest

from clbench.api.strategy import STRATEGIES


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_config_composes_into_its_own_config_class(name, tmp_path):
    """Instantiate what composes (as lightning-hydra-template's test_configs does) and
    compare it with the strategy's own config class and defaults."""
    from omegaconf import OmegaConf

    from clbench.config import compose

    cfg = compose([f"strategy={name}", f"results_dir={tmp_path}"])
    built = OmegaConf.to_object(cfg.strategy)
    cls = STRATEGIES.get(name).config_class
    assert type(built) is cls and built == cls(name=name)
