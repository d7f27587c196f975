"""What the protocol refuses before any data is read (clbench.protocol.compat): a strategy
paired with a scenario that hides what it needs, before any training or record."""
import pytest

from clbench import protocol
from clbench.protocol import IncompatibleError, RunSettings
from clbench.types import TASK_INCREMENTAL

from probes import Probe
from synthetic import blob_scenario


def settings(tmp_path, **kw):
    return RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_incompatible_pairing_refused_before_training(tmp_path):
    class NeedsTasks(Probe):
        needs = frozenset({"task_id_test"})
        kinds = frozenset({TASK_INCREMENTAL, "class_incremental"})

    scenario = blob_scenario()
    probe = NeedsTasks(info=scenario.info)
    with pytest.raises(IncompatibleError, match=r"needs \['task_id_test'\].*runs on scenario kinds: \['task_incremental'\]"):
        protocol.run(scenario, probe, settings=settings(tmp_path))
    assert probe.calls == [] and not list(tmp_path.rglob("*.json"))
