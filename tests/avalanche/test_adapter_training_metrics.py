"""Training metrics of clbench strategies inside an Avalanche experiment (clbench.avalanche.adapter):
the strategy's own steps fire Avalanche's iteration and epoch callbacks with ``mb_output``,
``loss`` and ``mb_y`` set, so Avalanche's loss, accuracy and timing metrics and its loggers
(a real ``CSVLogger``) see them as with a native strategy; an epoch is a shuffled pass of
the strategy over its training batches, whatever its own schedule (CLR's early stopping,
DKVB's epochs over cached features); plugins that need per-epoch evaluation
(``EarlyStoppingPlugin``, ``eval_every``) work, plugins that would change Avalanche's own
training step are refused by name; the evaluation loss stays finite on unseen classes."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from clbench.types import CLASS_INCREMENTAL, TASK_INCREMENTAL

from conftest import TINY

pytestmark = pytest.mark.filterwarnings("ignore")

#: small settings per strategy: two epochs per experience, everything else tiny
SMALL = {
    "er": dict(epochs=2, batch_size=16, buffer_size=40, replay_batch_size=8),
    "dkvb": dict(epochs=2, batch_size=16, num_codebooks=4, pairs_per_codebook=16, key_init_steps=5,
                 key_init_limit=100),
    "kfpf": dict(epochs=2, batch_size=16, k=2, fpf_iters=3, fpf_batch_size=8, buffer_size=40),
}


def _evaluator(*loggers):
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics, timing_metrics
    from avalanche.training.plugins import EvaluationPlugin

    return EvaluationPlugin(accuracy_metrics(minibatch=True, epoch=True, experience=True, stream=True),
                            loss_metrics(minibatch=True, epoch=True, experience=True, stream=True),
                            timing_metrics(epoch=True), loggers=list(loggers))


def _training_lines(folder):
    with open(folder / "training_results.csv") as f:
        return list(csv.DictReader(f))


class _StepSpy:
    """An Avalanche plugin recording what each training iteration shows."""

    def __init__(self):
        self.events, self.iterations = [], []

    def __getattr__(self, name):
        if not name.startswith(("before_", "after_")):
            raise AttributeError(name)

        def hook(strategy, **kw):
            self.events.append(name)
            if name == "after_training_iteration":
                self.iterations.append((strategy.mb_x.shape[0], strategy.mb_output.detach().clone(),
                                        strategy.mb_y.clone(), strategy.mb_task_id.clone(), float(strategy.loss)))
        return hook


@pytest.mark.slow
@pytest.mark.parametrize("name", ["er", "dkvb", "kfpf"])
def test_csv_logger_gets_a_training_line_per_epoch(name, benchmarks, tmp_path):
    """As Avalanche's own Naive: training_results.csv has one line per (experience, epoch),
    with the epoch's accuracy and loss from the strategy's own steps."""
    from avalanche.logging import CSVLogger

    from clbench.avalanche import make_strategy

    bm = benchmarks[CLASS_INCREMENTAL]
    spy = _StepSpy()
    s = make_strategy(name, benchmark=bm, evaluator=_evaluator(CSVLogger(str(tmp_path))), plugins=[spy],
                      backbone=TINY, **SMALL[name])
    steps = []
    for exp in bm.train_stream:
        results = s.train(exp)
        steps.append(len(spy.iterations))
        s.eval(bm.test_stream)
    lines = _training_lines(tmp_path)
    assert [(int(r["training_exp"]), int(r["epoch"])) for r in lines] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for r in lines:
        assert 0.0 <= float(r["training_accuracy"]) <= 1.0
        assert math.isfinite(float(r["training_loss"])) and float(r["training_loss"]) > 0
    assert float(lines[1]["training_accuracy"]) > 0  # real outputs, not an empty metric
    batches = math.ceil(72 / SMALL[name]["batch_size"])  # 80 images per experience less the 10% validation split
    assert steps == [2 * batches, 4 * batches]
    for n, out, y, task, loss in spy.iterations:
        assert out.shape == (len(y), 4) and len(task) == len(y) == n and math.isfinite(loss)
    # the epoch loss is the pattern-weighted mean of the steps' losses (Avalanche's LossMetric)
    last_epoch = spy.iterations[-batches:]
    mean = sum(loss * len(y) for _, _, y, _, loss in last_epoch) / sum(len(y) for _, _, y, _, _ in last_epoch)
    assert results["Loss_Epoch/train_phase/train_stream/Task000"] == pytest.approx(mean, rel=1e-5)
    assert results["Time_Epoch/train_phase/train_stream/Task000"] > 0
    # Avalanche's order within one iteration, and epochs around the iterations
    first = spy.events.index("before_training_iteration")
    assert spy.events[first:first + 8] == ["before_training_iteration", "before_forward", "after_forward",
                                           "before_backward", "after_backward", "before_update", "after_update",
                                           "after_training_iteration"]
    assert spy.events.count("before_training_epoch") == spy.events.count("after_training_epoch") == 4


@pytest.mark.slow
def test_epochs_follow_a_strategy_with_its_own_schedule(benchmarks, tmp_path):
    """CLR stops early on its validation accuracy: the CSV has a line per epoch it ran."""
    from avalanche.logging import CSVLogger

    from clbench.avalanche import make_strategy

    bm = benchmarks[TASK_INCREMENTAL]
    s = make_strategy("clr", benchmark=bm, evaluator=_evaluator(CSVLogger(str(tmp_path))), backbone=TINY,
                      trunk="random", epochs=6, patience=0, batch_size=16)
    for exp in bm.train_stream:
        s.train(exp)
    ran = [s.strategy.history[str(t)]["epochs_run"] for t in (0, 1)]
    lines = [int(r["training_exp"]) for r in _training_lines(tmp_path)]
    assert lines == [0] * ran[0] + [1] * ran[1]
    assert min(ran) < 6 or pytest.skip("CLR did not stop early on this data")


@pytest.mark.slow
def test_early_stopping_plugin_stops_the_strategy(benchmarks):
    """EarlyStoppingPlugin with eval_every=1: the watched metric does not improve (mode=min
    on an accuracy that rises), so training stops after `patience` epochs of 5 and the best
    (initial) state is restored."""
    from avalanche.training.plugins import EarlyStoppingPlugin

    from clbench.avalanche import make_strategy

    bm = benchmarks[CLASS_INCREMENTAL]
    spy = _StepSpy()
    stop = EarlyStoppingPlugin(patience=1, val_stream_name="test_stream", mode="min")
    s = make_strategy("naive", benchmark=bm, evaluator=_evaluator(), plugins=[stop, spy], backbone=TINY,
                      epochs=5, batch_size=16, lr=0.05, eval_every=1)
    before = {k: v.clone() for k, v in s.strategy.state_dict().items() if isinstance(v, torch.Tensor)}
    s.train(bm.train_stream[0], eval_streams=[bm.test_stream[0]])
    assert spy.events.count("after_training_epoch") == 1  # then the plugin stopped it, before epoch 2
    after = s.strategy.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the best state: the one before training
    s.train(bm.train_stream[1], eval_streams=[bm.test_stream[1]])  # the next experience trains again
    assert spy.events.count("after_training_epoch") == 2 and s.trained == [0, 1]


def test_plugins_that_change_avalanches_training_step_are_refused(benchmarks):
    from avalanche.training.plugins import EWCPlugin, ReplayPlugin

    from clbench.avalanche import make_strategy

    for plugin, name in ((ReplayPlugin(mem_size=10), "ReplayPlugin"), (EWCPlugin(ewc_lambda=1.0), "EWCPlugin")):
        with pytest.raises(ValueError, match=name):
            make_strategy("naive", benchmark=benchmarks[CLASS_INCREMENTAL], plugins=[plugin], backbone=TINY)


@pytest.mark.slow
def test_eval_loss_stays_finite_on_unseen_classes(benchmarks):
    """Masked classes used to score 1000 below the minimum, so the loss on an experience not
    trained yet read about 1007. It is the cross-entropy over the classes the protocol scores
    (plus the sample's own); the accuracies stay the protocol's."""
    from clbench.avalanche import make_strategy

    bm = benchmarks[CLASS_INCREMENTAL]
    s = make_strategy("naive", benchmark=bm, evaluator=_evaluator(), backbone=TINY, epochs=1, batch_size=16)
    r0 = s.eval(bm.test_stream)
    s.train(bm.train_stream[0])
    r1 = s.eval(bm.test_stream)
    loss = "Loss_Exp/eval_phase/test_stream/Task000/Exp{:03d}"
    acc = "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{:03d}"
    assert r0[acc.format(0)] == r0[acc.format(1)] == 0.0  # row 0 of the protocol
    assert 0 < r0[loss.format(0)] < 10 and 0 < r0[loss.format(1)] < 10
    assert r1[acc.format(1)] == 0.0 and 0 < r1[loss.format(1)] < 50  # unseen experience: finite, no 1000
    assert 0 < r1[loss.format(0)] < 10
