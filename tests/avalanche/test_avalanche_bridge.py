"""The Avalanche bridge (clbench.avalanche) both ways, on real Fashion-MNIST subsets (no
downloads):

1. Avalanche benchmarks as clbench scenarios (``scenario_from_benchmark``);
2. clbench strategies as Avalanche strategies (``make_strategy``), driven by Avalanche's own
   train/eval loop and EvaluationPlugin, the adapter's state saved without dill;
3. Avalanche's metrics against clbench's on the same run;
4. Avalanche is never imported by ``import clbench`` or the CLI's startup.

``scenario=avalanche``: tests/scenarios/test_avalanche_benchmarks.py; ``strategy=avl_*``:
tests/strategies/test_avalanche_baselines.py.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

import scenarios.avalanche_benchmarks  # noqa: F401  (registers scenario avalanche / avalanche_ti)
import strategies.avalanche_baselines  # noqa: F401  (registers avl_*)
from clbench.api.strategy import STRATEGIES
from clbench.errors import DataMissingError
from clbench.models.backbones import BACKBONE_PRESETS, BackboneWeightsError
from clbench.protocol.evaluation import evaluate_single_label
from clbench.results import metrics
from clbench.types import CLASS_INCREMENTAL, MULTILABEL, TASK_INCREMENTAL

from conftest import CLASSES, TINY

pytestmark = pytest.mark.filterwarnings("ignore")


ACC = "Top1_Acc_Exp/eval_phase/test_stream/Task{t:03d}/Exp{j:03d}"


#: config fields made small for the loop over every registered strategy (applied where present)
SHRINK = dict(epochs=1, batch_size=32, pretrain_epochs=1, key_init_epochs=1, key_init_limit=200, num_codebooks=8,
              pairs_per_codebook=64, patterns_per_exp=20, sample_size=32, mem_size=60)


def _evaluator():
    from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics, loss_metrics
    from avalanche.training.plugins import EvaluationPlugin

    return EvaluationPlugin(accuracy_metrics(experience=True, stream=True),
                            forgetting_metrics(experience=True, stream=True),
                            loss_metrics(experience=True), loggers=[])


def _clbench_row(template, scenario, step):
    """Row ``step`` of the clbench matrix for the adapter's current model (the protocol's evaluator)."""
    copy_ = template.evaluation_copy()  # as the protocol does: a copy, before_eval done, eval mode
    row = evaluate_single_label(lambda x, t: template._predict(copy_, x, t), scenario, step,
                                [e.test for e in scenario.experiences], device=torch.device("cpu"), batch_size=512)
    return row.accuracy


def _avalanche_row(results, scenario):
    return [results[ACC.format(t=e.task_id if scenario.kind == TASK_INCREMENTAL else 0, j=e.index)]
            for e in scenario.experiences]


def test_scenario_from_benchmark_derives_family_and_classes(benchmarks):
    from clbench.avalanche import scenario_from_benchmark

    ci = scenario_from_benchmark(benchmarks[CLASS_INCREMENTAL])
    ti = scenario_from_benchmark(benchmarks[TASK_INCREMENTAL])
    assert ci.kind == CLASS_INCREMENTAL and not ci.visibility.task_id_test
    assert ti.kind == TASK_INCREMENTAL and ti.visibility.task_id_train and ti.visibility.task_id_test
    assert [e.task_id for e in ti.experiences] == [0, 1]
    for sc in (ci, ti):
        assert sorted(c for e in sc.experiences for c in e.classes) == CLASSES
        for e, tr in zip(sc.experiences, benchmarks[CLASS_INCREMENTAL].train_stream):
            assert sorted(set(e.train.y.tolist())) == sorted(e.classes) and len(e.train) == 80 and len(e.test) == 40
    with pytest.raises(ValueError, match="do not tell its experiences apart"):
        scenario_from_benchmark(benchmarks[CLASS_INCREMENTAL], kind=TASK_INCREMENTAL)


def test_repeated_class_ids_across_tasks_are_made_global():
    from avalanche.benchmarks import nc_benchmark
    from torch.utils.data import TensorDataset

    from clbench.avalanche import scenario_from_benchmark

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 4, 4, generator=g), torch.arange(4).repeat(10)
    bm = nc_benchmark(TensorDataset(x, y), TensorDataset(x, y), n_experiences=2, task_labels=True,
                      fixed_class_order=[0, 1, 2, 3], class_ids_from_zero_in_each_exp=True)
    sc = scenario_from_benchmark(bm)
    assert [tuple(e.classes) for e in sc.experiences] == [(0, 1), (2, 3)] and sc.num_classes == 4
    assert sorted(set(sc.experiences[1].test.y.tolist())) == [2, 3]  # local ids 0, 1 offset by 2


def _benchmark_for(cls, benchmarks):
    if CLASS_INCREMENTAL in cls.kinds and not ({"task_id_train", "task_id_test"} & set(cls.needs)):
        return CLASS_INCREMENTAL
    return TASK_INCREMENTAL if TASK_INCREMENTAL in cls.kinds else None


@pytest.mark.slow
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_runs_in_avalanche_loop(name, benchmarks, tmp_path, monkeypatch):
    """Each registered strategy trains through Avalanche's loop; its EvaluationPlugin reports
    every experience's accuracy, equal to the clbench protocol's evaluation of the same model."""
    from clbench.avalanche import make_strategy, scenario_from_benchmark

    cls = STRATEGIES.get(name)
    kind = _benchmark_for(cls, benchmarks)
    if kind is None or cls.kinds == {MULTILABEL}:
        pytest.skip(f"{name} runs on {sorted(cls.kinds)} only")
    bm = benchmarks[kind]
    fields = {f for f in cls.config_class.__dataclass_fields__}
    small = {k: v for k, v in {**SHRINK, "cache_dir": str(tmp_path)}.items() if k in fields}
    from clbench.avalanche.benchmark import read_layout

    preferred = cls.preferred_backbone(read_layout(bm, kind).info(name))
    backbone = TINY if preferred is None else dataclasses.replace(BACKBONE_PRESETS[preferred], width=4)
    try:
        s = make_strategy(name, benchmark=bm, evaluator=_evaluator(), eval_mb_size=512, backbone=backbone, **small)
    except (BackboneWeightsError, DataMissingError) as err:  # e.g. pretrained weights unavailable offline
        pytest.skip(f"{name} cannot be built offline: {err}")
    assert s.train_mb_size == getattr(s.strategy.config, "batch_size") and s.train_mb_size > 1
    scenario = scenario_from_benchmark(bm)
    got_task, predict = [], cls.predict  # evaluation runs on copies of the learner: watch the class

    def watched(self, x, task=None):
        got_task.append(task is not None)
        return predict(self, x, task)

    monkeypatch.setattr(cls, "predict", watched)
    for exp in bm.train_stream:
        s.train(exp)
        results = s.eval(bm.test_stream)
    assert s.trained == [0, 1]
    assert set(got_task) == {kind == TASK_INCREMENTAL}  # task labels only where the benchmark has them
    row = _avalanche_row(results, scenario)
    assert all(0.0 <= a <= 1.0 for a in row)
    assert row == pytest.approx(_clbench_row(s, scenario, 2), abs=1e-6)


def test_strategy_needing_task_ids_is_refused_on_class_incremental(benchmarks):
    from clbench.avalanche import make_strategy
    from clbench.protocol import IncompatibleError
    from clbench.api.strategy import Strategy, StrategyConfig, register_strategy

    name = "_needs_tasks_for_avalanche_test"
    if name not in STRATEGIES:
        register_strategy(name)(type("NeedsTasks", (Strategy,), {"needs": frozenset({"task_id_test"}),
                                                                  "config_class": StrategyConfig}))
    with pytest.raises(IncompatibleError, match="task_id_test"):
        make_strategy(name, benchmark=benchmarks[CLASS_INCREMENTAL])
    with pytest.raises(TypeError, match="valid: config fields"):
        make_strategy("naive", benchmark=benchmarks[CLASS_INCREMENTAL], learning_rate=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("kind", [CLASS_INCREMENTAL, TASK_INCREMENTAL])
def test_avalanche_metrics_agree_with_clbench_matrix(kind, benchmarks):
    """On one run, Avalanche's per-experience accuracies equal the clbench matrix rows, and

        StreamForgetting (after training experience T) = -BWT(R) = (1/(T-1)) sum_{j<T} (R[j][j] - R[T][j]).

    Why: Avalanche records an experience's "initial" accuracy when it is evaluated while it
    is the experience trained last (R[j][j] here, as we evaluate after every experience) and
    its "last" accuracy in the current eval; ``last`` is reset at each eval, and the
    experience trained last only gets its initial value in that same eval, so it has no pair
    and is left out: the mean runs over j = 1..T-1, exactly BWT's. ExperienceForgetting of j
    is R[j][j] - R[T][j]. (clbench's FGT is Chaudhry's max-based forgetting, a different number.)
    """
    from clbench.avalanche import make_strategy, scenario_from_benchmark

    bm = benchmarks[kind]
    scenario = scenario_from_benchmark(bm)
    s = make_strategy("naive", benchmark=bm, evaluator=_evaluator(), epochs=2, batch_size=16, lr=0.05,
                      eval_mb_size=512, backbone=TINY)
    results = s.eval(bm.test_stream)  # row 0: before any training
    R = [_clbench_row(s, scenario, 0)]
    assert _avalanche_row(results, scenario) == pytest.approx(R[0], abs=1e-6)
    for i, exp in enumerate(bm.train_stream):
        s.train(exp)
        results = s.eval(bm.test_stream)
        R.append(_clbench_row(s, scenario, i + 1))
        assert _avalanche_row(results, scenario) == pytest.approx(R[-1], abs=1e-6)
    T = len(R) - 1
    bwt = metrics.backward_transfer(R)
    assert results["StreamForgetting/eval_phase/test_stream"] == pytest.approx(-bwt, abs=1e-6)
    for j in range(T - 1):
        t = scenario.experiences[j].task_id if kind == TASK_INCREMENTAL else 0
        key = f"ExperienceForgetting/eval_phase/test_stream/Task{t:03d}/Exp{j:03d}"
        assert results[key] == pytest.approx(R[j + 1][j] - R[T][j], abs=1e-6)
    if kind == CLASS_INCREMENTAL:
        assert R[1][0] - R[2][0] > 0  # the run forgets, so the check above is not 0 == 0


def test_adapter_state_round_trips_without_dill(benchmarks, tmp_path):
    """Avalanche's save_checkpoint pickles with dill and fails on torch optimisers; the
    adapter's state is plain tensors and lists, loadable with ``weights_only=True``."""
    from clbench.avalanche import make_strategy

    bm = benchmarks[CLASS_INCREMENTAL]
    s = make_strategy("er", benchmark=bm, evaluator=_evaluator(), epochs=1, batch_size=16, backbone=TINY)
    s.train(bm.train_stream[0])
    torch.save(s.state_dict(), tmp_path / "state.pt")
    fresh = make_strategy("er", benchmark=bm, evaluator=_evaluator(), epochs=1, batch_size=16, backbone=TINY, seed=1)
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert fresh.trained == [0]
    assert fresh.eval(bm.test_stream) == pytest.approx(s.eval(bm.test_stream))


def test_clbench_does_not_import_avalanche():
    code = (
        "import sys, io, contextlib\n"
        "import clbench, clbench.cli, clbench.protocol, clbench.config, clbench.avalanche\n"
        "from clbench.config import load_plugins\n"
        "load_plugins()\n"
        "import scenarios.avalanche_benchmarks, strategies.avalanche_baselines\n"
        "from clbench.config import store_configs; store_configs()\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert clbench.cli.main(['--help']) == 0\n"
        "bad = sorted(m for m in sys.modules if m == 'avalanche' or m.startswith('avalanche.'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
