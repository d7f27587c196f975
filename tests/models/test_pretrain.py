"""Setup loops report progress: trunk pretraining (clbench.models.pretrain) and DKVB's key
init each end in a "done in" line with their steps."""
from __future__ import annotations

import torch

from clbench.api.data import TensorData
from clbench.models.backbones import BackboneConfig
from clbench.models.pretrain import pretrain_backbone
from clbench.types import CLASS_INCREMENTAL


def test_dkvb_key_init_and_trunk_pretraining_show_progress(capsys, tmp_path):
    from clbench.types import VISIBILITY_BY_KIND, ScenarioInfo
    from strategies.dkvb import DKVB, DKVBConfig

    info = ScenarioInfo("t", CLASS_INCREMENTAL, (1, 4, 4), 4, VISIBILITY_BY_KIND[CLASS_INCREMENTAL])
    cfg = DKVBConfig(encoder="identity", num_codebooks=4, pairs_per_codebook=8, key_init_steps=6, batch_size=8)
    strategy = DKVB(cfg, info, None, seed=0)
    assert strategy.fit_keys(torch.rand(30, 16, generator=torch.Generator().manual_seed(0))) == 6
    err = capsys.readouterr().err
    assert "dkvb key init" in err and "6 steps" in err

    g = torch.Generator().manual_seed(0)
    data = TensorData(torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g))
    path, facts = pretrain_backbone(BackboneConfig(width=4), (1, 28, 28), data, epochs=1, seed=0, batch_size=16,
                                    device=torch.device("cpu"), cache_dir=tmp_path, file_prefix="t", key_settings={},
                                    meta={})
    assert path.is_file() and not facts["cached"]
    assert "pretrain t: done in" in capsys.readouterr().err
