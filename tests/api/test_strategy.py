"""The strategy API's hooks (clbench.api.strategy): ``end_stream`` comes once, after the last
step, whether the stream shows its boundaries or not."""
from __future__ import annotations

import pytest

from clbench import protocol
from scenarios.task_agnostic import as_task_agnostic

from probes import Bias
from synthetic import blob_scenario


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


@pytest.mark.parametrize("agnostic", [False, True])
def test_end_stream_comes_once_after_the_last_step(tmp_path, agnostic):
    sc = blob_scenario(n_exp=3, per_class=20)
    sc = as_task_agnostic(sc) if agnostic else sc
    s = Bias(info=sc.info_for(0.1))
    protocol.run(sc, s, settings=settings(tmp_path))
    assert s.calls.count("end_stream") == 1 and s.calls[-1] == "end_stream"
