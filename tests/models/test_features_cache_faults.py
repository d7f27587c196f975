"""The feature cache under faults (issue 25): an entry is stored with a checksum and verified on
read (a zeroed entry of the right shape is recomputed, never used); a cache that cannot be
written (read-only, CLBENCH_CACHE a file) warns once and the run goes on without it."""
from __future__ import annotations

import os
import warnings

import pytest
import torch

from clbench.api.data import TensorData
from clbench.models import features

CPU = torch.device("cpu")


class Linear(torch.nn.Linear):
    def __init__(self):
        torch.manual_seed(0)
        super().__init__(16, 4)

    def forward(self, x):
        return super().forward(x.flatten(1))


def data(n=12):
    g = torch.Generator().manual_seed(0)
    return TensorData(torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % 3)


def test_a_zeroed_entry_of_the_right_shape_is_recomputed(tmp_path):
    good = features.encode(Linear(), data(), device=CPU, cache=tmp_path)
    (path,) = tmp_path.glob("*.pt")
    saved = torch.load(path, weights_only=True)
    saved["features"] = torch.zeros_like(saved["features"])
    torch.save(saved, path)
    hits = features.stats["hits"]
    again = features.encode(Linear(), data(), device=CPU, cache=tmp_path)
    assert features.stats["hits"] == hits  # not served from the damaged entry
    assert torch.equal(again.x, good.x)
    third = features.encode(Linear(), data(), device=CPU, cache=tmp_path)
    assert features.stats["hits"] == hits + 1 and torch.equal(third.x, good.x)  # the rewritten entry is used


@pytest.mark.parametrize("kind", ["read-only", "a file"])
def test_a_cache_that_cannot_be_written_warns_once_and_the_encoding_goes_on(tmp_path, monkeypatch, kind):
    if kind == "read-only":
        where = tmp_path / "ro"
        where.mkdir()
        where.chmod(0o555)
        if os.geteuid() == 0:  # root writes anyway: make the write itself fail as a read-only mount would
            monkeypatch.setattr(features.tempfile, "mkstemp",
                                lambda *a, **k: (_ for _ in ()).throw(OSError(30, "Read-only file system")))
    else:
        where = tmp_path / "a_file"
        where.write_text("not a folder")
    monkeypatch.setenv("CLBENCH_CACHE", str(where))
    monkeypatch.setattr(features, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = features.encode(Linear(), data(), device=CPU)
        b = features.encode(Linear(), data(8), device=CPU)
    assert torch.equal(a.x, features.compute(Linear(), data(), device=CPU).x) and len(b) == 8
    messages = [str(w.message) for w in caught if "feature cache" in str(w.message)]
    assert len(messages) == 1 and str(where) in messages[0] and "without" in messages[0]
