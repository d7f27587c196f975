"""The strategy contract (clbench.protocol.contract, shipped as ``clbench check``) on every
registered strategy, plugins included, on a tiny synthetic stream of each family it
supports: it trains with a finite loss; the same seed gives the same matrix; its
``state_dict`` survives ``torch.save`` / ``torch.load(weights_only=True)`` into a freshly
built strategy that predicts exactly the same; a run resumed after experience 1 ends with
the same matrix. Every config composes into the strategy's own config class."""
from __future__ import annotations

import pytest

from clbench.api.strategy import STRATEGIES
from clbench.protocol.contract import check_resume, check_state, check_trains, kinds_of

CASES = [(name, kind) for name in STRATEGIES.names() for kind in kinds_of(STRATEGIES.get(name))]


def _assert_ok(findings) -> None:
    bad = [f for f in findings if not f.ok]
    assert not bad, "; ".join(f"{f.check} ({f.kind}): {f.detail}" for f in bad)


@pytest.mark.parametrize("name, kind", CASES)
def test_trains_with_finite_loss_and_completes(name, kind, tmp_path):
    _assert_ok([check_trains(name, kind, tmp_path)])


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_same_seed_same_matrix_state_round_trip_and_resume(name, tmp_path):
    kind = kinds_of(STRATEGIES.get(name))[0]
    _assert_ok(check_state(name, kind, tmp_path) + [check_resume(name, kind, tmp_path)])


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
