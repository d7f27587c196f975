"""ML-FMNIST (scenarios/sources/mlfmnist.py): a mosaic's labels are exactly the classes in its
cells, seeded; the baselines run end to end on the mlfmnist stream."""
import math

import numpy as np
import pytest
import torch

from clbench.types import MULTILABEL
from scenarios.sources import mlfmnist


def test_mosaic_labels_are_exactly_the_classes_in_the_cells():
    items = torch.arange(10).repeat_interleave(3).float().view(-1, 1, 1, 1).expand(-1, 1, 28, 28)
    labels = torch.arange(10).repeat_interleave(3)
    x, y = mlfmnist.mosaics(items, labels, 400, np.random.default_rng(5))
    assert x.shape == (400, 1, 56, 56) and y.shape == (400, 10)
    for m in range(400):
        cells = {int(x[m, 0, r, c]) for r in (0, 28) for c in (0, 28)}
        assert cells == set(torch.nonzero(y[m]).flatten().tolist())
    counts = np.bincount(y.sum(1).numpy(), minlength=5)
    assert counts[0] == 0 and all(60 < counts[k] < 140 for k in (1, 2, 3, 4))  # k uniform on 1..4
    x2, y2 = mlfmnist.mosaics(items, labels, 400, np.random.default_rng(5))
    assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
@pytest.mark.parametrize("strategy", ["naive", "joint", "er"])
def test_baselines_run_end_to_end_on_mlfmnist(tmp_path, strategy):
    from clbench.cli.launch import run_from_config
    from clbench.config import compose

    record, path = run_from_config(compose([
        f"strategy={strategy}", "scenario=mlfmnist", "logger=none", "progress=false", "device=cpu",
        f"results_dir={tmp_path}", "scenario.train_mosaics=200", "scenario.test_mosaics=100", "strategy.epochs=1", "backbone.width=8",
    ]))
    assert record.status == "complete" and path.exists()
    assert len(record.matrix) == 6 and all(len(r) == 5 for r in record.matrix)
    assert all(record.matrix[i][j] == 0.0 for i in range(6) for j in range(i, 5))
    m = record.metrics
    for key in ("avg_mAP", "last_mAP", "CF1", "OF1"):
        assert m[key] is not None and 0.0 <= m[key] <= 1.0 and not math.isnan(m[key])
    assert m["last_mAP"] == pytest.approx(record.extra["rows"][-1]["mAP"])
    assert record.scenario["kind"] == MULTILABEL and record.scenario["experience_classes"][0] == [0, 1]
