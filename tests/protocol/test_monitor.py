"""The step monitor (clbench.protocol.monitor): the loss curve recorded every n steps; a
non-finite loss fails the run, naming the step, and the completed rows are kept."""
from __future__ import annotations

import pytest
import torch

from clbench import protocol
from clbench.types import StepStats

from probes import Bias
from synthetic import blob_scenario


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_loss_curve_is_recorded_every_n_steps(tmp_path):
    sc = blob_scenario(n_exp=2, per_class=20)
    s = Bias(info=sc.info_for(0.1))
    record, _ = protocol.run(sc, s, settings=settings(tmp_path, log_every=3))
    steps = [p[0] for p in record.extra["loss_curve"]]
    assert steps == sorted(steps) and steps[-1] == s.steps and all(v > 0 for _, v in record.extra["loss_curve"])
    assert steps[0] == 3


class Diverging(Bias):
    def observe(self, batch):
        stats = super().observe(batch)
        return StepStats(torch.tensor(float("nan")) if self.steps >= 12 else stats.loss, stats.n)


def test_non_finite_loss_fails_the_run_and_keeps_the_rows(tmp_path):
    sc = blob_scenario(n_exp=3, per_class=20)
    s = Diverging(info=sc.info_for(0.1))
    with pytest.raises(protocol.NonFiniteError, match="step 12 .*experience 2"):
        protocol.run(sc, s, settings=settings(tmp_path, log_every=4))
    from clbench.results import records

    (path,) = (tmp_path / "runs").rglob("*.json")
    rec = records.load(path)
    assert rec.status == "failed" and rec.experiences_done == 1 and len(rec.matrix) == 2  # 10 steps per experience
    assert "non-finite" in rec.error
