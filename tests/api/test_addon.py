"""Add-ons (clbench.api.addon): their hooks, their compute counted in the record's phases and
FLOPs, the row label, aux metrics and deviations; composing one onto a strategy from the
command line."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from clbench import protocol
from clbench.api.addon import Addon, AddonConfig, register_addon

from probes import Bias
from synthetic import blob_scenario


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


@dataclass
class CountingConfig(AddonConfig):
    scale: float = 0.5


@register_addon("_counting")
class Counting(Addon):
    """Counts hooks; at the end of the stream scales the strategy's bias (a real change)."""

    config_class = CountingConfig

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.steps, self.ends, self.streams = 0, 0, 0

    def after_step(self, batch, stats) -> None:
        self.steps += 1

    def end_experience(self) -> None:
        self.ends += 1

    def end_stream(self) -> None:
        self.streams += 1
        with torch.no_grad():
            self.strategy.bias.mul_(self.config.scale)
            _ = torch.ones(64, 64) @ torch.ones(64, 64)  # compute to count

    def metrics(self) -> dict:
        return {"steps_seen": self.steps}


def test_addon_hooks_compute_and_row_label(tmp_path):
    sc = blob_scenario(n_exp=3, per_class=20)
    s = Bias(info=sc.info_for(0.1))
    addon = Counting(CountingConfig(name="_counting", scale=0.0), sc.info_for(0.1))
    record, path = protocol.run(sc, s, settings=settings(tmp_path, count_flops=True), addon=addon)
    assert addon.steps == s.steps > 0 and addon.ends == 3 and addon.streams == 1
    assert torch.count_nonzero(s.bias) == 0  # the add-on changed the live learner before the final row
    assert record.strategy["name"] == "_bias+_counting" and "+_counting" in str(path)
    assert record.extra["aux"][-1]["_counting.steps_seen"] == s.steps
    phases = record.timing["phases"][-1]
    assert "addon:_counting" in phases and "end_stream" in phases
    assert record.compute["flops_phases"][-1]["addon:_counting"] == 2 * 64 ** 3
    assert record.compute["train_flops"] >= 2 * 64 ** 3
    assert any("_counting.scale=0.0" in d for d in record.deviations)


def test_addon_composes_from_the_command_line(tmp_path):
    from clbench.config import compose

    cfg = compose(["strategy=er", "addon=_counting", "addon.scale=0.25", f"results_dir={tmp_path}"])
    assert cfg.addon.name == "_counting" and cfg.addon.scale == 0.25
    assert compose([f"results_dir={tmp_path}"]).addon.name == "none"
