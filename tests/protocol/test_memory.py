"""A learner's memory in bytes (clbench.protocol.memory): model, frozen copies, stored data
(buffer samples and stored logits) and optimiser state, each storage counted once."""
from __future__ import annotations

import torch
from synthetic import blob_scenario
from torch import nn

from clbench.api.buffers import ReservoirBuffer
from clbench.api.strategy import Strategy, StrategyConfig
from clbench.protocol.memory import memory_bytes
from clbench.types import Batch


class Holder(Strategy):
    """A 16->6 linear model (102 float32), its frozen teacher copy, a buffer and an Adam state."""

    def __init__(self, info) -> None:
        super().__init__(StrategyConfig(name="_holder", epochs=1, batch_size=4), info)
        self.net = nn.Linear(16, 6)
        self.teacher = nn.Linear(16, 6).requires_grad_(False)
        self.buffer = ReservoirBuffer(10, torch.Generator().manual_seed(0))
        self.opt = torch.optim.Adam(self.net.parameters())


def test_memory_counts_each_kind():
    s = Holder(blob_scenario(n_exp=3).info)
    empty = memory_bytes(s)
    assert empty == {"model": 102 * 4, "frozen_copies": 102 * 4, "stored": 0, "optimizer": 0, "total": 2 * 102 * 4}
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
    s.buffer.add(Batch(x=x, y=y, raw=x), logits=torch.randn(4, 6))  # 10 slots: x 16 floats, y int64, logits 6
    s.net(x.view(4, -1)).sum().backward()
    s.opt.step()
    used = memory_bytes(s)
    assert used["stored"] == 10 * (16 * 4 + 8 + 6 * 4)
    assert used["optimizer"] == 2 * 102 * 4 + 2 * 4  # exp_avg, exp_avg_sq of each parameter, two step counters
    assert used["total"] == used["model"] + used["frozen_copies"] + used["stored"]
