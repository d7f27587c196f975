"""Test doubles: strategies that record what the protocol lets them see."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from clbench.api.strategy import Strategy, StrategyConfig
from clbench.types import Batch, StepStats


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
