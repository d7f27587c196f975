"""Training-time augmentation (clbench.api.augment): ``crop_flip`` changes the images; the
protocol applies the scenario's augmentation to every training batch and keeps the raw
inputs beside them."""
from __future__ import annotations

import torch

from clbench import protocol
from clbench.api.augment import crop_flip

from probes import Bias
from synthetic import blob_scenario


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_augmentation_contract(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    out = crop_flip(x, g)
    assert out.shape == x.shape and not torch.equal(out, x)
    sc = blob_scenario(n_exp=2, per_class=10)
    sc.augmentation = "flip"
    seen = []

    class Keep(Bias):
        def observe(self, batch):
            seen.append((batch.x.clone(), batch.raw.clone()))
            return super().observe(batch)

    s = Keep(info=sc.info_for(0.1))
    assert s.info.augmentation == "flip"
    protocol.run(sc, s, settings=settings(tmp_path))
    assert any(not torch.equal(a, r) for a, r in seen)  # augmented inputs, raw kept beside them
    assert all(torch.equal(torch.sort(a.flatten(1), 1).values, torch.sort(r.flatten(1), 1).values) for a, r in seen)
    assert not torch.equal(s.augment(torch.arange(64.).view(4, 1, 4, 4).repeat(8, 1, 1, 1)),
                           torch.arange(64.).view(4, 1, 4, 4).repeat(8, 1, 1, 1))
