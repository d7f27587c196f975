"""Write a strategy: a new method in a few lines (a linear classifier on pixels with a
small replay buffer), registered by name, run under the protocol like any other
(``strategy=linear_replay``), and checked with ``clbench check`` (finite loss, same seed
same matrix, state round trip, resume, config) on tiny synthetic streams.

    python examples/write_a_strategy.py
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from clbench.api import ReservoirBuffer, StepStats, Strategy, StrategyConfig, register_strategy, setting
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, TASK_INCREMENTAL


@dataclass
class LinearReplayConfig(StrategyConfig):
    epochs: int = setting(1, "training epochs per experience", ge=1)
    batch_size: int = setting(32, "samples per training batch", ge=1)
    lr: float = setting(0.05, "SGD learning rate", gt=0)
    buffer_size: int = setting(200, "samples in the reservoir buffer", ge=0)


@register_strategy("linear_replay")  # also makes `strategy=linear_replay strategy.lr=...` work
class LinearReplay(Strategy):
    """A linear softmax classifier on pixels; each step replays as many buffer samples."""

    config_class = LinearReplayConfig
    kinds = frozenset({CLASS_INCREMENTAL, TASK_INCREMENTAL, TASK_AGNOSTIC})  # single-label families

    def __init__(self, config: LinearReplayConfig, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self.head = nn.Linear(math.prod(info.input_shape), info.num_classes)
        self.optimizer = torch.optim.SGD(self.head.parameters(), lr=config.lr)  # saved by state_dict() itself
        self.buffer = ReservoirBuffer(config.buffer_size, self.generator)  # so is the buffer

    def observe(self, batch) -> StepStats:
        x, y = batch.x, batch.y
        replay = self.buffer.sample(len(batch))
        if replay is not None:
            x, y = torch.cat([x, self.augment(replay.raw)]), torch.cat([y, replay.y])
        loss = F.cross_entropy(self.head(x.flatten(1)), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.buffer.add(batch)
        return StepStats(loss=loss.detach(), n=len(batch))

    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.head(x.flatten(1))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--results-dir", default="results/examples")
    a = p.parse_args(argv)

    from clbench.cli.check import check_command
    from clbench.cli.launch import run_from_config
    from clbench.config import compose

    cfg = compose(["strategy=linear_replay", "scenario=split_fmnist", "seed=0", "strategy.lr=0.1",
                   f"scenario.train_per_class={a.train_per_class}", f"scenario.test_per_class={a.test_per_class}",
                   "logger=none", "progress=false", f"results_dir={a.results_dir}"])
    record, path = run_from_config(cfg)
    print(f"linear_replay on split_fmnist: ACC {record.metrics['ACC']:.4f}, FGT {record.metrics['FGT']:.4f} ({path})")
    # the same checks as `clbench check strategy=linear_replay --module <your module>`
    return check_command(["strategy=linear_replay"])


if __name__ == "__main__":
    sys.exit(main())
