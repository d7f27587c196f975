"""Test doubles: strategies that record what the protocol lets them see (``Probe``,
``Recorder``), learn a bias (``Bias``), need task ids (``_needs_task_ids``), or keep a
teacher as a typical user's first LwF does (``_lwf_teacher``, with and without ``structure()``)."""
from __future__ import annotations

import copy
import hashlib
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from clbench.api.strategy import Strategy, StrategyConfig, register_strategy
from clbench.types import Batch, StepStats
from strategies.baselines import Finetune, FinetuneConfig, classification_loss


class Probe(Strategy):
    """Learns nothing; records every batch, hook call and predict argument."""

    def __init__(self, config=None, info=None, backbone=None, **kwargs) -> None:
        super().__init__(config or StrategyConfig(name="_probe", epochs=1, batch_size=16), info, backbone, **kwargs)
        self.bias = nn.Parameter(torch.zeros(info.num_classes))
        self.calls: list[str] = []
        self.batch_tasks: list[Optional[torch.Tensor]] = []
        self.view_tasks: list[Optional[int]] = []
        self.info_tasks: list[Optional[int]] = []
        self.predict_tasks: list[Optional[torch.Tensor]] = []
        self.train_ids: list[int] = []
        self.validation_ids: list[int] = []

    def begin_experience(self, info) -> None:
        self.calls.append("begin")
        self.info_tasks.append(info.task_id)

    def end_experience(self) -> None:
        self.calls.append("end")

    def train_experience(self, view) -> None:
        self.view_tasks.append(view.task_id)
        for batch in view.batches(16, split="validation"):
            self.validation_ids += sample_ids(batch.x)
        super().train_experience(view)

    def observe(self, batch: Batch) -> StepStats:
        self.calls.append("observe")
        self.batch_tasks.append(batch.task)
        self.train_ids += sample_ids(batch.x)
        return StepStats(loss=0.0, n=len(batch))

    def predict(self, x, task=None):
        self.predict_tasks.append(task)
        return self.bias.expand(len(x), -1)


def sample_ids(x: torch.Tensor) -> list[int]:
    """Synthetic scenarios write each sample's id into its first pixel."""
    return [int(v) for v in x.reshape(len(x), -1)[:, 0].round()]


class Bias(Strategy):
    """A learnable bias; counts calls and steps on itself."""

    name = "_bias"

    def __init__(self, config=None, info=None, backbone=None, **kw) -> None:
        super().__init__(config or StrategyConfig(name="_bias", epochs=2, batch_size=8), info, backbone, **kw)
        self.bias = nn.Parameter(torch.zeros(info.num_classes))
        self.opt = torch.optim.SGD(self.parameters(), lr=0.1)
        self.calls: list[str] = []
        self.steps = 0

    def observe(self, batch: Batch) -> StepStats:
        self.steps += 1
        self.calls.append("observe")
        loss = nn.functional.cross_entropy(self.bias.expand(len(batch), -1), batch.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return StepStats(loss=loss.detach(), n=len(batch))

    def end_stream(self) -> None:
        self.calls.append("end_stream")

    def predict(self, x, task=None):
        return self.bias.expand(len(x), -1)


class Recorder(Strategy):
    """Learns a bias; records, on the object it lives in, every call and a digest of
    every batch it is handed. Evaluation copies append to their own lists (and to the
    class-level ``eval_batches``, the test's side channel)."""

    eval_batches: list = []

    def __init__(self, config=None, info=None, backbone=None, **kw) -> None:
        super().__init__(config or StrategyConfig(name="_recorder", epochs=1, batch_size=8), info, backbone, **kw)
        self.bias = nn.Parameter(torch.zeros(info.num_classes))
        self.opt = torch.optim.SGD(self.parameters(), lr=0.1)
        self.log: list = []

    def train(self, mode: bool = True):
        if hasattr(self, "log"):
            self.log.append(("train", mode))
        return super().train(mode)

    def begin_experience(self, info) -> None:
        self.log.append(("begin", info.index))

    def end_experience(self) -> None:
        self.log.append(("end",))

    def end_stream(self) -> None:
        self.log.append(("end_stream",))

    def before_eval(self) -> None:
        self.log.append(("before_eval",))

    def observe(self, batch: Batch) -> StepStats:
        digest = hashlib.sha1(batch.x.numpy().tobytes()).hexdigest()[:10]
        self.log.append(("observe", len(batch), digest))
        loss = nn.functional.cross_entropy(self.bias.expand(len(batch), -1), batch.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return StepStats(loss=loss.detach(), n=len(batch))

    def predict(self, x, task=None):
        self.log.append(("predict", len(x)))
        Recorder.eval_batches.append(x[:, 0, 0, 0].clone())
        return self.bias.expand(len(x), -1)


@register_strategy("_needs_task_ids")
class NeedsTaskIds(Probe):
    config_class = StrategyConfig
    needs = frozenset({"task_id_train", "task_id_test"})


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


def interrupt_after_row(monkeypatch, row: int) -> None:
    """Make the in-process run stop as SIGTERM would, right after row ``row`` is saved."""
    from clbench.protocol import Interrupted, checkpoints

    original = checkpoints.save_session

    def save_then_stop(session, step):
        path = original(session, step)
        if step == row:
            raise Interrupted("signal 15 (SIGTERM)")
        return path

    monkeypatch.setattr(checkpoints, "save_session", save_then_stop)
