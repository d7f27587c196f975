"""The evaluation copy (clbench.protocol.snapshot): the live learner's state does not depend
on how often it was evaluated."""
from __future__ import annotations

import torch

from clbench import protocol
from clbench.models.backbones import BackboneConfig
from strategies.baselines import ERConfig, ExperienceReplay

from synthetic import blob_scenario


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_live_state_does_not_depend_on_how_often_it_was_evaluated(tmp_path):
    states = []
    for rows in ("all", "final"):
        sc = blob_scenario(n_exp=3, per_class=20)
        torch.manual_seed(0)
        s = ExperienceReplay(ERConfig(name="er", epochs=2, batch_size=8, buffer_size=20), sc.info_for(0.1),
                             BackboneConfig(name="cnn28", width=4), seed=0)
        record, _ = protocol.run(sc, s, settings=settings(tmp_path, eval_rows=rows))
        assert record.status == "complete"
        states.append(s.state_dict())
    a, b = states
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
    ea, eb = a["_extra_state"], b["_extra_state"]
    assert all(torch.equal(ea["generators"][k], eb["generators"][k]) for k in ea["generators"])
    assert torch.equal(ea["stateful"]["buffer"]["fields"]["x"], eb["stateful"]["buffer"]["fields"]["x"])
    assert ea["stateful"]["buffer"]["seen"] == eb["stateful"]["buffer"]["seen"]
