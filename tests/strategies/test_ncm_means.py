"""NCM's defining invariant (Mensink et al. 2013): its class means are the per-class means
of the features it saw, in any batch order; it predicts the nearest mean and never a class
it has not seen; it learns in one pass, the same with or without boundaries; and it runs
on real Fashion-MNIST from its reference experiment."""
import dataclasses

import pytest
import torch

from clbench import protocol
from clbench.api.synthetic import as_stream, image_blob_scenario
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, VISIBILITY_BY_KIND, Batch, ScenarioInfo
from strategies.ncm import NCM, NCMConfig

from conftest import small_run_overrides


def info(kind=CLASS_INCREMENTAL, d=5, k=4):
    return ScenarioInfo("syn", kind, (d,), k, VISIBILITY_BY_KIND[kind])


def handmade(n=30, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    return torch.randn(n, d, generator=g) * 3 + y.unsqueeze(1).float(), y


def feed(s, z, y, order, batch=7):
    for i in range(0, len(order), batch):
        at = order[i:i + batch]
        s.observe(Batch(x=z[at], y=y[at]))


def test_class_means_are_the_per_class_feature_means_in_any_batch_order():
    z, y = handmade()
    expected = torch.stack([z[y == k].double().mean(0) for k in range(3)])
    for seed in (0, 1):
        s = NCM(NCMConfig(name="ncm", encoder="identity"), info(), None)
        feed(s, z, y, torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)), batch=4 + 3 * seed)
        assert torch.allclose(s.means()[:3], expected, rtol=0, atol=1e-12)
        assert s.counts.tolist() == [10, 10, 10, 0]
        assert torch.count_nonzero(s.means()[3]) == 0


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_predicts_the_nearest_mean_and_never_a_class_it_has_not_seen(metric):
    z, y = handmade()
    s = NCM(NCMConfig(name="ncm", encoder="identity", metric=metric), info(), None)
    feed(s, z, y, torch.arange(len(y)))
    x = torch.randn(11, 5, generator=torch.Generator().manual_seed(3)) * 4
    means = torch.stack([z[y == k].double().mean(0) for k in range(3)])
    if metric == "euclidean":
        want = -((x.double().unsqueeze(1) - means.unsqueeze(0)) ** 2).sum(-1)
    else:
        want = (x.double() @ means.T) / x.double().norm(dim=1, keepdim=True) / means.norm(dim=1)
    scores = s.predict(x)
    assert torch.allclose(scores[:, :3].double(), want, atol=1e-4)
    assert torch.equal(scores.argmax(1), want.argmax(1))
    assert torch.isinf(scores[:, 3]).all() and (scores[:, 3] < 0).all()  # class 3 never seen


def test_one_pass_only_and_bad_choices_are_clear_errors():
    with pytest.raises(ValueError, match=r"strategy\.epochs=2.*\[1, 1\]"):
        NCM(NCMConfig(name="ncm", encoder="identity", epochs=2), info(), None)
    with pytest.raises(ValueError, match=r"strategy\.metric='manhattan'.*'euclidean', 'cosine'"):
        NCM(NCMConfig(name="ncm", encoder="identity", metric="manhattan"), info(), None)


def test_without_boundaries_and_with_repeats_the_same_matrix(tmp_path):
    """The means of a stream that repeats each experience are the means of one pass: NCM on a
    task-agnostic stream (no boundary calls) gives the class-incremental matrix."""
    settings = protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", val_fraction=0.0)
    ci = image_blob_scenario(CLASS_INCREMENTAL)
    stream = dataclasses.replace(as_stream(ci), repeats=3)
    records = []
    for sc in (ci, stream):
        s = NCM(NCMConfig(name="ncm", encoder="identity", batch_size=5), sc.info_for(0.0), None)
        records.append(protocol.run(sc, s, settings=settings)[0])
    assert records[1].scenario["kind"] == TASK_AGNOSTIC and records[1].scenario["repeats"] == 3
    assert records[0].matrix == records[1].matrix and records[0].metrics["ACC"] > 0.9


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_reference_experiment_runs_on_real_fashion_mnist(tmp_path, monkeypatch):
    from clbench.cli.launch import run_from_config
    from clbench.config import compose

    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    cfg = compose(["experiment=reference/split_fmnist_ncm", *small_run_overrides(tmp_path)])
    assert cfg.strategy.name == "ncm" and cfg.strategy.encoder == "identity"
    record, _ = run_from_config(cfg)
    assert record.status == "complete" and len(record.matrix) == 6
    assert record.strategy["details"]["embedding_dim"] == 784
    assert any(d.startswith("encoder=identity") for d in record.deviations)
    assert record.metrics["ACC"] > 0.4  # linear_probe's reference row: 0.23
