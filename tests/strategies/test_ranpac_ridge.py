"""RanPAC's defining invariants (McDonnell et al. 2023): G and C are the Gram matrix and the
class prototypes of the projected features of everything seen; the readout is the closed-
form ridge solution on them, with the lambda the official ``optimise_ridge_parameter``
picks on each experience; the random projection never changes; the one-eigendecomposition
lambda sweep equals one solve per lambda; it needs boundaries; and it runs on real
Fashion-MNIST from its reference experiment."""
import numpy as np
import pytest
import torch

from clbench import protocol
from clbench.api.synthetic import image_blob_scenario
from clbench.protocol.compat import IncompatibleError
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, VISIBILITY_BY_KIND, Batch, ScenarioInfo
from strategies.ranpac import RanPAC, RanPACConfig, ridge_sweep

from conftest import small_run_overrides

D, K, M = 6, 4, 24
RIDGES = [10.0 ** e for e in range(-8, 9)]


def info():
    return ScenarioInfo("syn", CLASS_INCREMENTAL, (D,), K, VISIBILITY_BY_KIND[CLASS_INCREMENTAL])


def experience(classes, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(classes)[torch.randint(len(classes), (n,), generator=g)]
    centers = torch.randn(K, D, generator=torch.Generator().manual_seed(9)) * 2
    return centers[y] + torch.randn(n, D, generator=g), y


def official_choice(h, Y):
    """RanPAC.py optimise_ridge_parameter (float64): fit on the first 80%, MSE on the rest."""
    h, Y = h.double(), Y.double()
    n = int(h.shape[0] * 0.8)
    G, Q = h[:n].T @ h[:n], h[:n].T @ Y[:n]
    losses = [float(torch.nn.functional.mse_loss(h[n:] @ torch.linalg.solve(G + r * torch.eye(len(G)), Q), Y[n:]))
              for r in RIDGES]
    return RIDGES[int(np.argmin(losses))], losses


@pytest.mark.parametrize("n", [15, 60])  # fewer samples than M (the dual side) and more (the primal side)
def test_the_lambda_sweep_equals_one_solve_per_lambda(n):
    g = torch.Generator().manual_seed(n)
    h = torch.relu(torch.randn(n + 8, 30, generator=g)).double()
    Y = torch.nn.functional.one_hot(torch.randint(K, (n + 8,), generator=g), K).double()
    want = []
    for r in RIDGES:
        W = torch.linalg.solve(h[:n].T @ h[:n] + r * torch.eye(30, dtype=h.dtype), h[:n].T @ Y[:n])
        want.append(float(((h[n:] @ W - Y[n:]) ** 2).mean()))
    got = ridge_sweep(h[:n], Y[:n], h[n:], Y[n:], RIDGES)
    big = [i for i, r in enumerate(RIDGES) if r >= 1e-3]  # tiny lambdas on a singular G: rounding either way
    assert np.allclose([got[i] for i in big], [want[i] for i in big], rtol=1e-6)


def test_readout_is_the_closed_form_ridge_on_the_accumulated_gram_with_the_official_lambda():
    s = RanPAC(RanPACConfig(name="ranpac", encoder="identity", projection_dim=M, batch_size=7), info(), None, seed=0)
    W = s.projection.clone()
    seen = []
    for i, classes in enumerate([(0, 1), (2, 3)]):
        z, y = experience(classes, seed=i)
        for at in range(0, len(y), 7):
            s.observe(Batch(x=z[at:at + 7], y=y[at:at + 7]))
        s.end_experience()
        h = torch.relu(z.double() @ W.double())
        Y = torch.nn.functional.one_hot(y, K).double()
        choice, losses = official_choice(h, Y)
        assert s.ridges_chosen[i] == choice, (s.ridges_chosen, choice, losses)
        assert 1e-8 < choice < 1e8  # an interior choice: the held-out error really decided it
        seen.append((h, Y))
    h, Y = torch.cat([a for a, _ in seen]), torch.cat([b for _, b in seen])
    G, C = h.T @ h, h.T @ Y
    assert torch.allclose(s.gram.double(), G, rtol=1e-5, atol=1e-4)
    assert torch.allclose(s.prototypes.double(), C, rtol=1e-5, atol=1e-4)
    ridge = s.ridges_chosen[-1]
    closed = torch.linalg.solve(G + ridge * torch.eye(M, dtype=G.dtype), C)
    assert torch.allclose(s.readout.double(), closed, rtol=1e-3, atol=1e-5 * float(closed.abs().max()))
    x = torch.randn(9, D, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(s.predict(x).double(), torch.relu(x.double() @ W.double()) @ closed, rtol=1e-3, atol=1e-4)
    assert torch.equal(s.projection, W)


def test_the_projection_never_changes_through_a_run(tmp_path):
    sc = image_blob_scenario(CLASS_INCREMENTAL)
    s = RanPAC(RanPACConfig(name="ranpac", encoder="identity", projection_dim=48, batch_size=5), sc.info_for(0.1),
               None, seed=3)
    W = s.projection.clone()
    assert W.shape == (64, 48) and abs(float(W.mean())) < 0.1 and abs(float(W.std()) - 1) < 0.1  # N(0, 1)
    record = protocol.run(sc, s, settings=protocol.RunSettings(results_dir=str(tmp_path), progress=False,
                                                               device="cpu"))[0]
    assert record.status == "complete" and record.metrics["ACC"] > 0.9
    assert torch.equal(s.projection, W) and len(s.ridges_chosen) == 3
    assert record.strategy["details"]["ridges_chosen"] == s.ridges_chosen
    assert not torch.equal(RanPAC(s.config, sc.info_for(0.1), None, seed=4).projection, W)  # drawn from the seed


def test_needs_boundaries_and_bad_settings_are_clear_errors():
    with pytest.raises(IncompatibleError, match="does not support task_agnostic"):
        protocol.check_compatible(RanPAC, TASK_AGNOSTIC, "split_fmnist_stream")
    with pytest.raises(ValueError, match=r"ridge_log10_min=3 exceeds strategy.ridge_log10_max=2"):
        RanPAC(RanPACConfig(name="ranpac", encoder="identity", projection_dim=8, ridge_log10_min=3,
                            ridge_log10_max=2), info(), None)
    with pytest.raises(ValueError, match=r"strategy\.holdout=1"):
        RanPAC(RanPACConfig(name="ranpac", encoder="identity", projection_dim=8, holdout=1), info(), None)
    c = RanPACConfig()
    assert (c.projection_dim, c.holdout, c.ridge_log10_min, c.ridge_log10_max) == (10000, 0.2, -8, 8)  # the paper's


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_reference_experiment_runs_on_real_fashion_mnist(tmp_path, monkeypatch):
    from clbench.cli.launch import run_from_config
    from clbench.config import compose

    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    cfg = compose(["experiment=reference/split_fmnist_ranpac", *small_run_overrides(tmp_path),
                   "strategy.projection_dim=1000"])
    record, _ = run_from_config(cfg)
    assert record.status == "complete" and len(record.matrix) == 6
    assert len(record.strategy["details"]["ridges_chosen"]) == 5
    assert "projection_dim=1000 (paper: 10000)" in record.deviations
    assert any(d.startswith("no Phase 1") for d in record.deviations)
    assert record.metrics["ACC"] > 0.4  # linear_probe's reference row: 0.23
