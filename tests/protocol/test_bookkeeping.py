"""The record's bookkeeping (clbench.protocol.bookkeeping): the parameters added per
experience; a teacher grown mid-stream counted apart from the model, with the warning that
such a strategy cannot be resumed kept in the record."""
from __future__ import annotations

import pytest
import torch

from clbench import protocol
from clbench.protocol import RunSettings
from clbench.protocol.contract import run_once

from probes import Probe, TeacherLwF  # noqa: F401  (TeacherLwF: registered as _lwf_teacher)
from synthetic import blob_scenario


def settings(tmp_path, **kw):
    return RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_params_added_per_experience_counted(tmp_path):
    class Grows(Probe):
        def end_experience(self):
            super().end_experience()
            setattr(self, f"head{len(self.calls)}", torch.nn.Linear(2, 3))  # 9 parameters

    scenario = blob_scenario()
    record, _ = protocol.run(scenario, Grows(info=scenario.info), settings=settings(tmp_path))
    assert [a["total"] for a in record.params["added"]] == [9, 9, 9]


def test_the_run_warns_and_counts_the_teacher_apart(tmp_path):
    with pytest.warns(RuntimeWarning, match=r"grew modules during the stream \(teacher\).*structure\(\)"):
        _, strategy, record = run_once("_lwf_teacher", "class_incremental", tmp_path)
    assert record.status == "complete" and len(record.extra["warnings"]) == 1
    model = sum(p.numel() for m in (strategy.backbone, strategy.head) for p in m.parameters())
    last = record.params["after"][-1]
    assert last["total"] == model and last["frozen_copies"] == model  # not 2 x model
    assert "frozen_copies" not in record.params["initial"]  # no teacher before experience 1
