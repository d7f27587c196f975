"""Evaluation inside experiences (eval_every; clbench.protocol.online): the curve is taken on
evaluation copies, never the live learner, and changes nothing of the run; online_ACC,
AUC_ACC and min_ACC (clbench.results.metrics.online_metrics) on a hand-made curve."""
from __future__ import annotations

import pytest
from probes import Recorder
from synthetic import blob_scenario

from clbench import protocol
from clbench.models.backbones import BackboneConfig
from clbench.results.metrics import online_metrics
from strategies.baselines import FinetuneConfig, Naive

CNN = BackboneConfig(name="cnn28", width=4)


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_online_metrics_on_a_hand_made_curve():
    # two experiences of 4 steps; points every 2 steps; experience 0 ends at step 4
    steps = [2, 4, 6, 8]
    accs = [[0.6, None], [0.8, None], [0.2, 0.5], [0.4, 0.9]]
    m = online_metrics(steps, accs, [4, 8])
    assert m["online_ACC"] == pytest.approx((0.6 + 0.8 + 0.35 + 0.65) / 4)
    # trapezoids over steps 2..8 of the means 0.6, 0.8, 0.35, 0.65, divided by the span 6
    assert m["AUC_ACC"] == pytest.approx((2 * (0.6 + 0.8) / 2 + 2 * (0.8 + 0.35) / 2 + 2 * (0.35 + 0.65) / 2) / 6)
    assert m["min_ACC"] == pytest.approx(0.2)  # experience 0's least accuracy after its end (the stability gap)
    assert online_metrics([], [], [None])["online_ACC"] is None
    assert online_metrics([3], [[0.5]], [None]) == {"online_ACC": 0.5, "AUC_ACC": 0.5, "min_ACC": None}


def test_eval_every_never_touches_the_live_learner_and_changes_nothing(tmp_path):
    sc = blob_scenario(n_exp=3, per_class=40)
    Recorder.eval_batches = []
    s = Recorder(info=sc.info)
    record, _ = protocol.run(sc, s, settings=settings(tmp_path / "rec", eval_every=2))
    assert not any(c[0] == "predict" for c in s.log)  # the copies predicted, not the live learner
    assert len(record.extra["online"]["steps"]) > 0 and Recorder.eval_batches  # ... and they did predict
    runs = []
    for every in (0, 2):
        protocol.seed_everything(0)  # as `clbench run` does: the backbone's init draws from the global generator
        n = Naive(FinetuneConfig(name="naive", epochs=1, batch_size=16), sc.info, CNN, seed=0)
        runs.append(protocol.run(sc, n, settings=settings(tmp_path / f"{len(runs)}", eval_every=every))[0])
    plain, online = runs
    assert online.matrix == plain.matrix and online.metrics["ACC"] == plain.metrics["ACC"]
    curve = online.extra["online"]
    assert curve["steps"] == [2, 4, 6, 8, 10, 12, 14]  # 5 steps per experience, 15 in all
    assert curve["experience"] == [1, 1, 2, 2, 2, 3, 3] and curve["end_steps"] == [5, 10, 15]
    assert all(a[2] is None for a in curve["acc"][:5]) and curve["acc"][-1][2] is not None
    assert curve["seconds"] > 0 and "eval_online" in online.timing["phases"][1]
    for k in ("online_ACC", "AUC_ACC", "min_ACC"):
        assert 0 <= online.metrics[k] <= 1 and k not in plain.metrics
