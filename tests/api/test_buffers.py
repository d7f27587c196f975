"""Replay memories (clbench.api.buffers): the reservoir is uniform over the stream, extra
fields stay with their samples, the class-balanced buffer is balanced, the priority buffer
keeps each group's highest priorities."""
from __future__ import annotations

import pytest
import torch

from clbench.api.buffers import ClassBalancedBuffer, PriorityBuffer, ReservoirBuffer
from clbench.types import Batch


def test_reservoir_is_uniform_over_the_stream():
    from scipy.stats import chisquare

    n, capacity, trials = 300, 30, 400
    counts = torch.zeros(n)
    g = torch.Generator().manual_seed(0)
    for _ in range(trials):
        buf = ReservoirBuffer(capacity, g)
        for start in range(0, n, 16):
            ids = torch.arange(start, min(n, start + 16))
            buf.add(Batch(x=ids.float().view(-1, 1), y=ids))
        assert len(buf) == capacity and buf.seen == n
        counts[buf.y[:capacity]] += 1
    assert counts.sum() == capacity * trials
    assert chisquare(counts.numpy()).pvalue > 1e-3
    early, late = counts[:100].mean(), counts[-100:].mean()
    assert abs(early - late) < 0.15 * counts.mean()  # no bias towards recent (or old) samples


def test_buffers_keep_extra_fields_with_their_samples():
    g = torch.Generator().manual_seed(0)
    buf = ReservoirBuffer(10, g)
    x = torch.arange(40).float().view(-1, 1)
    buf.add(Batch(x=x, y=torch.arange(40)), logits=x.repeat(1, 3) * 2, expert=torch.tensor(4))
    batch, extra = buf.sample_with(5)
    assert torch.equal(extra["logits"][:, 0], batch.x[:, 0] * 2) and torch.all(extra["expert"] == 4)
    cb = ClassBalancedBuffer(12, g)
    for k in range(10):
        y = torch.full((20,), k % 4) if k < 8 else torch.full((20,), 3)
        cb.add(Batch(x=torch.randn(20, 2), y=y), expert=torch.tensor(k))
    counts = cb.class_counts()
    assert len(cb) == 12 and max(counts.values()) - min(counts.values()) <= 1


def test_priority_buffer_keeps_the_highest_priorities_of_each_group():
    g = torch.Generator().manual_seed(3)
    buf = PriorityBuffer(groups=2, per_group=3, generator=g)
    groups = torch.tensor([0, 1, 0, 0, 1, 0, 0, 1, 1, 0, 1, 0])
    x = torch.arange(12.0)
    buf.offer(groups[:5], {"x": x[:5]})
    buf.offer(groups[5:], {"x": x[5:]})
    replay = torch.Generator().manual_seed(3)
    prio = torch.cat([torch.rand(5, generator=replay, dtype=torch.float64),
                      torch.rand(7, generator=replay, dtype=torch.float64)])
    expected = set()
    for grp in (0, 1):
        idx = torch.nonzero(groups == grp).flatten()
        expected |= set(idx[prio[idx].argsort(descending=True)[:3]].tolist())
    assert set(buf.all()["x"].long().tolist()) == expected and len(buf) == 6 and buf.offered == 12
    with pytest.raises(ValueError, match="group 2 out of range; valid groups: 0..1"):
        buf.offer(torch.tensor([2]), {"x": x[:1]})
