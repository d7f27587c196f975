"""``clbench check``: the strategy contract shipped to plugin authors. An LwF that keeps
its teacher as a submodule made after experience 1, without ``structure()``, runs to the
end but cannot be resumed: the check fails on it (and says what to do), the protocol
warns during the run, and the teacher's parameters are counted apart from the model's."""
from __future__ import annotations

import copy
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clbench.api.strategy import register_strategy
from clbench.cli import main
from clbench.protocol.contract import check_resume, check_state, run_once
from clbench.types import Batch, StepStats
from strategies.baselines import Finetune, FinetuneConfig, classification_loss


class TeacherLwF(Finetune):
    """Learning without forgetting with its teacher kept as a submodule (made at the end
    of each experience): the shape of a typical user's first LwF."""

    config_class = FinetuneConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = None

    def end_experience(self) -> None:
        self.teacher = copy.deepcopy(nn.Sequential(self.backbone, self.head)).requires_grad_(False).eval()

    def observe(self, batch: Batch) -> StepStats:
        logits = self(batch.x)
        loss = classification_loss(logits, batch)
        if self.teacher is not None:
            with torch.no_grad():
                target = self.teacher(batch.x)
            loss = loss + F.mse_loss(logits, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return StepStats(loss=loss.detach(), n=len(batch))


class TeacherLwFWithStructure(TeacherLwF):
    """The same, with the teacher described by ``structure()`` and rebuilt before a state loads."""

    def structure(self):
        return {"teacher": self.teacher is not None}

    def build_structure(self, structure) -> None:
        if structure["teacher"] and self.teacher is None:
            self.end_experience()  # the same module; load_state_dict then fills in its weights


register_strategy("_lwf_teacher")(TeacherLwF)
register_strategy("_lwf_teacher_structured")(TeacherLwFWithStructure)


def test_a_teacher_grown_mid_stream_without_structure_fails_the_round_trip_and_the_resume(tmp_path):
    findings = {f.check: f for f in check_state("_lwf_teacher", "class_incremental", tmp_path)}
    assert findings["same seed"].ok
    trip = findings["state round trip"]
    assert not trip.ok and "teacher" in trip.detail and "structure()" in trip.detail, trip.detail
    resume = check_resume("_lwf_teacher", "class_incremental", tmp_path)
    assert not resume.ok and "teacher" in resume.detail


def test_with_structure_the_same_strategy_passes(tmp_path):
    findings = check_state("_lwf_teacher_structured", "class_incremental", tmp_path)
    findings.append(check_resume("_lwf_teacher_structured", "class_incremental", tmp_path))
    assert all(f.ok for f in findings), [(f.check, f.detail) for f in findings if not f.ok]


def test_the_run_warns_and_counts_the_teacher_apart(tmp_path):
    with pytest.warns(RuntimeWarning, match=r"grew modules during the stream \(teacher\).*structure\(\)"):
        _, strategy, record = run_once("_lwf_teacher", "class_incremental", tmp_path)
    assert record.status == "complete" and len(record.extra["warnings"]) == 1
    model = sum(p.numel() for m in (strategy.backbone, strategy.head) for p in m.parameters())
    last = record.params["after"][-1]
    assert last["total"] == model and last["frozen_copies"] == model  # not 2 x model
    assert "frozen_copies" not in record.params["initial"]  # no teacher before experience 1


def test_clbench_check_passes_a_good_strategy_and_fails_the_bad_one(tmp_path, capsys, monkeypatch):
    assert main(["check", "strategy=naive", "--kinds", "class_incremental"]) == 0
    out = capsys.readouterr().out
    assert "config composes" in out and "state round trip" in out and "resume" in out and "FAIL" not in out
    plugin = tmp_path / "my_lwf.py"
    plugin.write_text(textwrap.dedent('''
        from clbench.api.strategy import register_strategy
        from test_check import TeacherLwF

        @register_strategy("_my_lwf")
        class MyLwF(TeacherLwF):
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "strategy=_my_lwf", "--module", "my_lwf", "--kinds", "class_incremental"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "build_structure()" in out


def test_clbench_check_refuses_a_missing_or_unknown_strategy(capsys):
    assert main(["check"]) == 2
    assert "strategy=NAME" in capsys.readouterr().err
    assert main(["check", "strategy=nope"]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err
