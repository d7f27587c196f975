"""``make_strategy(..., model=my_module)`` (clbench.avalanche.user_model) and evaluation on
multi-head benchmarks, on small synthetic Avalanche benchmarks (no data files)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.filterwarnings("ignore")

ACC = "Top1_Acc_Exp/eval_phase/test_stream/Task{t:03d}/Exp{j:03d}"


def _benchmark(task_labels: bool = False, local_ids: bool = False, n: int = 160):
    """4 classes in 2 experiences of 1x8x8 inputs whose class is easy to read (a bright row)."""
    from avalanche.benchmarks import nc_benchmark
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)

    def data(k):
        y = torch.arange(4).repeat(k // 4)
        x = 0.1 * torch.rand(len(y), 1, 8, 8, generator=g)
        x[torch.arange(len(y)), 0, 2 * y] += 1.0
        return TensorDataset(x, y)

    return nc_benchmark(data(n), data(n // 2), n_experiences=2, task_labels=task_labels,
                        fixed_class_order=[0, 1, 2, 3], class_ids_from_zero_in_each_exp=local_ids)


def _evaluator():
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.training.plugins import EvaluationPlugin

    return EvaluationPlugin(accuracy_metrics(experience=True), loss_metrics(experience=True), loggers=[])


class Features(nn.Module):
    """A user's backbone: inputs to 16 features (no out_features attribute)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("name", ["naive", "er"])
def test_a_users_module_is_the_strategys_backbone(name):
    from clbench.avalanche import make_strategy

    bm = _benchmark()
    model = Features()
    w0 = model.net[1].weight.detach().clone()
    s = make_strategy(name, benchmark=bm, model=model, evaluator=_evaluator(), epochs=3, batch_size=16, lr=0.1)
    assert s.strategy.backbone.trunk is model and s.strategy.backbone.out_features == 16
    assert s.strategy.head.in_features == 16
    for exp in bm.train_stream:
        s.train(exp)
    results = s.eval(bm.test_stream)
    assert not torch.equal(model.net[1].weight, w0)  # trained in place, as Avalanche users expect
    assert results[ACC.format(t=0, j=1)] > 0.5


def test_a_frozen_encoder_strategy_uses_the_module_as_its_encoder():
    from clbench.avalanche import make_strategy

    model = Features()
    s = make_strategy("dkvb", benchmark=_benchmark(), model=model, epochs=1, batch_size=16, num_codebooks=4,
                      pairs_per_codebook=16, key_init_steps=3, key_init_limit=50)
    assert any(m is model for m in s.strategy.modules())
    assert not any(p.requires_grad for p in model.parameters())  # frozen, as DKVB's encoder is


def test_model_is_refused_where_it_cannot_be_used():
    from clbench.avalanche import make_strategy

    bm = _benchmark()
    with pytest.raises(ValueError, match=r"builds no backbone.*model=Features"):
        make_strategy("dkvb", benchmark=bm, model=Features(), encoder="identity", num_codebooks=4,
                      pairs_per_codebook=16)
    with pytest.raises(ValueError, match="backbone= or model=, not both"):
        make_strategy("naive", benchmark=bm, model=Features(), backbone="cnn28")
    with pytest.raises(ValueError, match=r"does not take inputs of shape \(batch, 1, 8, 8\)"):
        make_strategy("naive", benchmark=bm, model=nn.Linear(10, 4))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        make_strategy("naive", benchmark=bm, model="resnet18")


def test_multi_head_benchmark_with_local_class_ids_is_scored_on_global_ids():
    """class_ids_from_zero_in_each_exp: each task's targets are 0, 1; the adapter's scores
    are over global ids (task i's classes offset by 2i). Avalanche's accuracies equal the
    clbench protocol's evaluation of the same model (they read 0 on task 1 before)."""
    from clbench.avalanche import make_strategy, scenario_from_benchmark
    from clbench.protocol.evaluation import evaluate_single_label

    bm = _benchmark(task_labels=True, local_ids=True)
    s = make_strategy("naive", benchmark=bm, model=Features(), evaluator=_evaluator(), epochs=3, batch_size=16,
                      lr=0.1)
    for exp in bm.train_stream:
        s.train(exp)
    results = s.eval(bm.test_stream)
    scenario = scenario_from_benchmark(bm)
    copy_ = s.evaluation_copy()
    row = evaluate_single_label(lambda x, t: s._predict(copy_, x, t), scenario, 2,
                                [e.test for e in scenario.experiences], device=torch.device("cpu"),
                                batch_size=512).accuracy
    got = [results[ACC.format(t=t, j=t)] for t in (0, 1)]
    assert got == pytest.approx(row, abs=1e-6) and min(got) > 0.5
