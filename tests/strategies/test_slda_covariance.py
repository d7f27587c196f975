"""SLDA's defining invariants (Hayes & Kanan 2020): after one pass its shared covariance is
the covariance of what it saw as the paper defines it (biased, 1/N: exactly so on one
class; with ``covariance=pooled`` the pooled within-class covariance, in any batch order);
the paper's rule, applied a batch at a time, equals the official one-sample loop; its
predictions equal closed-form LDA with the same shrinkage; it runs without boundaries
and on real Fashion-MNIST from its reference experiment."""
import numpy as np
import pytest
import torch

from clbench import protocol
from clbench.api.synthetic import as_stream, image_blob_scenario
from clbench.types import CLASS_INCREMENTAL, VISIBILITY_BY_KIND, Batch, ScenarioInfo
from strategies.slda import SLDA, SLDAConfig

from conftest import small_run_overrides

D = 4


def info(k=4):
    return ScenarioInfo("syn", CLASS_INCREMENTAL, (D,), k, VISIBILITY_BY_KIND[CLASS_INCREMENTAL])


def handmade(n=36, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (n,), generator=g)
    mix = torch.randn(D, D, generator=g)
    return (torch.randn(n, D, generator=g) @ mix + 4 * y.unsqueeze(1)).double(), y


def fitted(z, y, order=None, batch=5, **kw):
    s = SLDA(SLDAConfig(name="slda", encoder="identity", **kw), info(), None)
    order = torch.arange(len(y)) if order is None else order
    for i in range(0, len(order), batch):
        at = order[i:i + batch]
        s.observe(Batch(x=z[at], y=y[at]))
    return s


def pooled_within_class(z, y):
    z, y = z.numpy(), y.numpy()
    dev = np.concatenate([z[y == k] - z[y == k].mean(0) for k in np.unique(y)])
    return dev.T @ dev / len(z)


def official_loop(z, y, k=4):
    """tyler-hayes/Deep_SLDA SLDA_Model.fit, one sample at a time (numpy, float64)."""
    mu, c, sigma, t = np.zeros((k, D)), np.zeros(k), np.ones((D, D)), 0
    for x, label in zip(z.numpy(), y.numpy()):
        d = (x - mu[label])[None]
        delta = d.T @ d * t / (t + 1)
        sigma = (t * sigma + delta) / (t + 1)
        mu[label] += (x - mu[label]) / (c[label] + 1)
        c[label] += 1
        t += 1
    return mu, sigma


def test_on_one_class_the_paper_covariance_is_the_biased_covariance_of_the_data():
    z, _ = handmade()
    y = torch.zeros(len(z), dtype=torch.long)
    s = fitted(z, y, batch=7)
    assert s.num_updates == len(z)
    assert np.allclose(s.covariance_matrix().numpy(), np.cov(z.numpy().T, bias=True), rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_pooled_covariance_is_the_pooled_within_class_covariance_in_any_batch_order(seed):
    z, y = handmade()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    s = fitted(z, y, order, batch=3 + 4 * seed, covariance="pooled")
    assert np.allclose(s.covariance_matrix().numpy(), pooled_within_class(z, y), rtol=0, atol=1e-10)
    means = np.stack([z.numpy()[y.numpy() == k].mean(0) for k in range(3)])
    assert np.allclose(s.means()[:3].numpy(), means, rtol=0, atol=1e-12)


def test_the_paper_rule_a_batch_at_a_time_equals_the_official_one_sample_loop():
    z, y = handmade()
    mu, sigma = official_loop(z, y)
    for batch in (1, 5, 36):
        s = fitted(z, y, batch=batch)
        assert np.allclose(s.covariance_matrix().numpy(), sigma, rtol=0, atol=1e-10)
        assert np.allclose(s.means().numpy(), mu, rtol=0, atol=1e-12)
    # on several classes the paper's global t/(t+1) (and a new class's zero mean) is not the pooled covariance
    assert not np.allclose(sigma, pooled_within_class(z, y), atol=1e-3)


@pytest.mark.parametrize("covariance", ["pooled", "paper"])
def test_predictions_equal_closed_form_lda_with_the_same_shrinkage(covariance):
    z, y = handmade()
    eps = 0.3  # large enough that a wrong shrinkage shows
    s = fitted(z, y, covariance=covariance, shrinkage=eps)
    sigma = pooled_within_class(z, y) if covariance == "pooled" else official_loop(z, y)[1]
    means = np.stack([z.numpy()[y.numpy() == k].mean(0) for k in range(3)])
    precision = np.linalg.inv((1 - eps) * sigma + eps * np.eye(D))
    x = torch.randn(13, D, generator=torch.Generator().manual_seed(5)) * 3
    want = x.double().numpy() @ precision @ means.T - 0.5 * np.einsum("kd,de,ke->k", means, precision, means)
    s.before_eval()
    scores = s.predict(x)
    assert np.allclose(scores[:, :3].double().numpy(), want, rtol=1e-5, atol=1e-4)
    assert torch.isinf(scores[:, 3]).all()  # never seen: never predicted
    assert SLDAConfig().shrinkage == 1e-4 and SLDAConfig().covariance == "paper"  # the paper's


def test_a_stale_readout_is_recomputed_after_more_samples():
    z, y = handmade()
    s = fitted(z[:18], y[:18], covariance="pooled")
    first = s.predict(z)
    s.observe(Batch(x=z[18:], y=y[18:]))
    again = fitted(z, y, covariance="pooled").predict(z)
    assert not torch.equal(first, again) and torch.allclose(s.predict(z), again)


def test_runs_without_boundaries(tmp_path):
    settings = protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu")
    sc = as_stream(image_blob_scenario(CLASS_INCREMENTAL))
    s = SLDA(SLDAConfig(name="slda", encoder="identity", batch_size=5), sc.info_for(0.1), None)
    record = protocol.run(sc, s, settings=settings)[0]
    assert record.status == "complete" and s.num_updates == sum(record.scenario["train_sizes"])
    assert record.metrics["ACC"] > 0.9


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_reference_experiment_runs_on_real_fashion_mnist(tmp_path, monkeypatch):
    from clbench.cli.launch import run_from_config
    from clbench.config import compose

    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    cfg = compose(["experiment=reference/split_fmnist_slda", *small_run_overrides(tmp_path)])
    record, _ = run_from_config(cfg)
    assert record.status == "complete" and len(record.matrix) == 6
    assert record.strategy["details"]["samples"] == sum(n - round(n * 0.1) for n in record.scenario["train_sizes"])
    assert any("no base initialisation" in d for d in record.deviations)
    assert record.metrics["ACC"] > 0.4  # linear_probe's reference row: 0.23
