"""DKVB's defining invariants (Träuble et al. 2023) and its probe baselines."""
import dataclasses

import pytest
import torch

from clbench.api.auxdata import AuxDataRefused, aux_for
from clbench.registry import UnknownNameError

from clbench import protocol
from clbench.models.backbones import BackboneConfig, BackboneWeightsError
from clbench.config import compose
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, VISIBILITY_BY_KIND, Batch, ScenarioInfo
from strategies import probes  # noqa: F401  (registers linear_probe, linear_probe_nobias, mlp_probe)
from strategies.dkvb import DKVB, DKVBConfig

from conftest import small_run_overrides

SMALL = dict(name="dkvb", num_codebooks=16, pairs_per_codebook=64, key_dim=4, batch_size=32, epochs=1,
             encoder="identity", key_init_epochs=2)


def info(kind=CLASS_INCREMENTAL, shape=(1, 4, 4), k=6):
    return ScenarioInfo("syn", kind, shape, k, VISIBILITY_BY_KIND[kind])


def fitted(seed=0, **kw):
    """A small DKVB on 16-d synthetic inputs with keys fitted on synthetic blobs."""
    s = DKVB(DKVBConfig(**{**SMALL, **kw}), info(), None, seed=seed)
    g = torch.Generator().manual_seed(seed)
    s.fit_keys(torch.randn(300, 16, generator=g) * 2)
    return s


def blobs(n=64, classes=(0, 1), seed=1):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(classes)[torch.randint(len(classes), (n,), generator=g)]
    centers = torch.randn(6, 16, generator=torch.Generator().manual_seed(7)) * 2
    return Batch(x=centers[y] + 0.5 * torch.randn(n, 16, generator=g), y=y)


def test_defaults_are_the_official_icml_recipe():
    c = DKVBConfig()
    assert (c.num_codebooks, c.pairs_per_codebook, c.key_dim, c.topk) == (256, 4096, 14, 1)
    assert (c.lr, c.momentum, c.weight_decay, c.label_smoothing, c.grad_clip, c.batch_size) == (0.3, 0, 0, 0.1, 1.0, 256)
    assert (c.key_init_epochs, c.ema_decay, c.ema_eps, c.dead_key_factor, c.epochs) == (10, 0.95, 1e-5, 0.1, 2000)
    s = fitted()
    assert torch.count_nonzero(s.values) == 0 and [p for p in s.parameters() if p.requires_grad] == [s.values]
    assert torch.allclose(s.projection.norm(dim=1), torch.ones(16, 4))  # unit columns over D


def test_unfetched_values_are_bit_for_bit_unchanged_after_a_step():
    s = fitted()
    for _ in range(3):  # make the values non-zero first
        s.observe(blobs(seed=2))
    before = s.values.detach().clone()
    batch = blobs(classes=(2, 3), seed=3)
    idx = s.fetch(batch.x, masked=False)
    s.observe(batch)
    fetched = torch.zeros(16, 64, dtype=torch.bool)
    fetched[torch.arange(16).view(-1, 1, 1), idx] = True
    after = s.values.detach()
    assert torch.equal(after[~fetched], before[~fetched])
    assert not torch.equal(after[fetched], before[fetched])


def test_chunked_lookup_equals_unchunked():
    a, b = fitted(codebook_chunk=1), fitted(codebook_chunk=16)
    for s in (a, b):
        s.observe(blobs(seed=4))
    x = blobs(n=50, seed=5).x
    for masked in (False, True):
        assert torch.equal(a.fetch(x, masked=masked), b.fetch(x, masked=masked))
    assert torch.equal(a.predict(x), b.predict(x))


def test_paper_size_lookup_runs_in_blocks():
    s = DKVB(DKVBConfig(name="dkvb", encoder="identity", codebook_chunk=8), info(shape=(1, 28, 28), k=10), None)
    assert s.values.shape == (256, 4096, 10) and s.keys.shape == (256, 4096, 14) and s.projection.shape == (256, 784, 14)
    idx = s.fetch(torch.rand(4, 784), masked=False)
    assert idx.shape == (256, 4, 1) and int(idx.max()) < 4096


def test_evaluation_leaves_the_counter_and_masking_routes_to_used_pairs_only():
    s = fitted()
    s.observe(blobs(n=32, classes=(0, 1), seed=6))
    usage = s.usage.clone()
    assert int(usage.sum()) == 32 * 16  # one fetch per head per sample
    x = blobs(n=200, classes=(0, 1, 2, 3, 4, 5), seed=7).x
    s.eval()
    s.predict(x)
    assert torch.equal(s.usage, usage)
    used = usage > 0
    books = torch.arange(16).view(-1, 1, 1)
    assert bool(used[books, s.fetch(x, masked=True)].all())
    assert not bool(used[books, s.fetch(x, masked=False)].all()), "test too weak: no query reached an unused pair"


def test_key_init_is_ema_kmeans_with_dead_key_restarts():
    s = DKVB(DKVBConfig(**{**SMALL, "key_init_epochs": 10}), info(), None, seed=0)
    z = torch.randn(400, 16, generator=torch.Generator().manual_seed(0)) * 3
    h = s.heads(z)

    def quantisation_error(keys):
        return float(torch.cdist(h, keys).min(-1).values.pow(2).mean())

    random_keys = s.keys.clone()
    s.fit_keys(z)
    assert torch.isfinite(s.keys).all()
    # without restarts, keys never assigned blow up (EMA sums / ~eps); restarted keys sit among the heads
    # (the N(0,1) start also seeds the EMA sums, as in the official code; it has decayed after 10 epochs)
    assert float(s.keys.abs().max()) <= 1.5 * float(h.abs().max())
    assert quantisation_error(s.keys) < 0.5 * quantisation_error(random_keys)
    assert int(s.usage.sum()) == 0


@pytest.fixture(scope="module")
def fmnist_tiny():
    """split_fmnist (seed 0) with 30 train / 10 test images per class, built once."""
    from scenarios.class_incremental import ClassIncrementalConfig, build_class_incremental

    cfg = ClassIncrementalConfig(name="split_fmnist", kind=CLASS_INCREMENTAL, train_per_class=30, test_per_class=10)
    return build_class_incremental(cfg, data_root=None, seed=0)


def run_on(scenario, strategy, tmp_path):
    settings = protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu")
    return protocol.run(scenario, strategy, settings=settings)[0]


DKVB_TINY = dict(num_codebooks=16, pairs_per_codebook=64, key_dim=6, batch_size=32, key_init_epochs=2,
                 key_init_limit=600)


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_stream_never_moves_keys_projection_or_encoder_and_counters_persist(tmp_path, monkeypatch, fmnist_tiny):
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    s = DKVB(DKVBConfig(name="dkvb", epochs=2, **DKVB_TINY), fmnist_tiny.info, BackboneConfig(name="cnn28"))
    snap, sums = {}, []
    prepare = s.prepare

    def prepare_then_snapshot(aux):
        prepare(aux)
        snap.update({k: v.clone() for k, v in s.state_dict().items() if k not in ("values", "usage", "_extra_state")})

    monkeypatch.setattr(s, "prepare", prepare_then_snapshot)
    monkeypatch.setattr(s, "end_experience", lambda: sums.append(int(s.usage.sum())))
    record = run_on(fmnist_tiny, s, tmp_path)
    assert record.status == "complete" and any(k.startswith("encoder.") for k in snap)
    state = s.state_dict()
    assert all(torch.equal(state[k], v) for k, v in snap.items()), [k for k, v in snap.items() if not torch.equal(state[k], v)]
    train_sizes = [n - round(n * 0.1) for n in record.scenario["train_sizes"]]  # 10% validation split
    expected = [2 * 16 * sum(train_sizes[:i + 1]) for i in range(5)]  # epochs x heads x samples, never reset
    assert sums == expected, (sums, expected)
    details = record.strategy["details"]
    assert details["key_init"]["images"] == 600 and details["key_init"]["source"] == "sklearn_digits"
    assert record.timing["prepare_s"] > 0
    assert any("key init on scikit-learn digits" in d for d in record.deviations)
    assert any(d.startswith("epochs=2") for d in record.deviations)


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_second_run_reuses_the_feature_cache_and_gives_the_same_record(tmp_path, monkeypatch, fmnist_tiny):
    from clbench.models.backbones import SmallCNN

    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    cfg = DKVBConfig(name="dkvb", epochs=1, **DKVB_TINY)

    def build():
        torch.manual_seed(0)  # the frozen cnn28's random init, as the CLI's seed_everything does
        return DKVB(cfg, fmnist_tiny.info, BackboneConfig(name="cnn28"))

    first = run_on(fmnist_tiny, build(), tmp_path)
    n_files = len(list((tmp_path / "cache" / "features").glob("*.pt")))
    assert n_files == 1 + 5 * 3  # key-init data + train/validation/test of 5 experiences
    monkeypatch.setattr(SmallCNN, "forward", lambda *a: (_ for _ in ()).throw(AssertionError("encoder ran")))
    second = run_on(fmnist_tiny, build(), tmp_path)
    assert second.matrix == first.matrix and second.strategy["details"] == first.strategy["details"]
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == n_files
    assert any("random weights" in d for d in second.deviations) and any("backbone=cnn28" in d for d in second.deviations)


def test_cli_config_composes_typed(tmp_path):
    cfg = compose(small_run_overrides(tmp_path, "strategy=dkvb", "strategy.num_codebooks=16", "strategy.encoder=identity"))
    assert cfg.strategy.num_codebooks == 16 and cfg.strategy.pairs_per_codebook == 4096 and cfg.strategy.lr == 0.3
    for name in ("linear_probe", "linear_probe_nobias", "mlp_probe"):
        assert compose(small_run_overrides(tmp_path, f"strategy={name}")).strategy.lr == 1e-3
    with pytest.raises(Exception, match="num_codebook"):
        compose(small_run_overrides(tmp_path, "strategy=dkvb", "strategy.num_codebook=16"))


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_runs_unchanged_on_a_task_agnostic_stream(tmp_path, monkeypatch, fmnist_tiny):
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    stream = dataclasses.replace(fmnist_tiny, name="fmnist_stream_test", kind=TASK_AGNOSTIC, repeats=2)
    protocol.check_compatible(DKVB, TASK_AGNOSTIC, stream.name)
    s = DKVB(DKVBConfig(name="dkvb", encoder="identity", epochs=1, **{**DKVB_TINY, "key_init_limit": 300}), stream.info, None)
    calls = []
    monkeypatch.setattr(s, "begin_experience", lambda info: calls.append(info))
    record = run_on(stream, s, tmp_path)
    assert record.status == "complete" and len(record.matrix) == 6 and not calls
    assert int(s.usage.sum()) == 2 * 16 * sum(record.scenario["train_sizes"])  # no validation split, 2 repeats
    assert record.metrics["ACC"] > 0.2


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_probes_run_on_the_same_features_and_dkvb_forgets_less(tmp_path, monkeypatch, fmnist_tiny):
    from clbench.api.strategy import STRATEGIES

    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    fgt = {}
    for name in ("linear_probe", "linear_probe_nobias", "mlp_probe"):
        cls = STRATEGIES.get(name)
        record = run_on(fmnist_tiny, cls(cls.config_class(name=name, encoder="identity", epochs=3), fmnist_tiny.info), tmp_path)
        assert record.status == "complete" and record.strategy["details"]["embedding_dim"] == 784
        assert any(d.startswith("encoder=identity") for d in record.deviations)
        fgt[name] = record.metrics["FGT"]
    cfg = DKVBConfig(name="dkvb", encoder="identity", epochs=3, key_init_source="fmnist", **DKVB_TINY)
    with pytest.raises(AuxDataRefused, match="'fmnist' .*stream's own data set"):  # the same-data ablation: refused
        run_on(fmnist_tiny, DKVB(cfg, fmnist_tiny.info, None), tmp_path)
    cfg = DKVBConfig(name="dkvb", encoder="identity", epochs=3, **DKVB_TINY)
    record = run_on(fmnist_tiny, DKVB(cfg, fmnist_tiny.info, None), tmp_path)
    assert record.strategy["aux_data"]["key_init"]["dataset"] == "digits"
    assert record.strategy["details"]["key_init"]["images"] == 600
    assert record.metrics["FGT"] < min(fgt.values()), (record.metrics["FGT"], fgt)


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"valid choices: \['backbone', 'identity'\]"):
        DKVB(DKVBConfig(**{**SMALL, "encoder": "pixels"}), info(), None)
    s = DKVB(DKVBConfig(**{**SMALL, "key_init_source": "imagenet"}), info(), None)
    with pytest.raises(UnknownNameError, match=r"unknown auxiliary data set 'imagenet'.*fmnist.*sklearn_digits"):
        s.prepare(aux_for(s))
    s = DKVB(DKVBConfig(**SMALL), info(), None)  # digits are 1x28x28, this stream 1x4x4
    with pytest.raises(ValueError, match="input shape"):
        s.prepare(aux_for(s))
    with pytest.raises(ValueError, match="topk"):
        DKVB(DKVBConfig(**{**SMALL, "topk": 0}), info(), None)


def test_resnet50_without_weights_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # no warm cache
    bb = BackboneConfig(name="resnet50", weights="IMAGENET1K_V2", input_size=224, normalize="imagenet")
    import torchvision

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.__class__, "get_state_dict", offline)
    with pytest.raises(BackboneWeightsError, match="IMAGENET1K_V2.*backbone.weights="):
        DKVB(DKVBConfig(**SMALL | {"encoder": "backbone"}), info(shape=(3, 32, 32), k=10), bb)


def test_deviations_name_what_differs_and_not_implementation_knobs():
    s = DKVB(DKVBConfig(**{**SMALL, "codebook_chunk": 3, "precompute": False}), info(), None)
    devs = s.deviations()
    assert not any(d.startswith(("codebook_chunk", "precompute", "encoder='identity'")) for d in devs)
    assert any(d.startswith("num_codebooks=16 (paper: 256)") for d in devs)
    assert dataclasses.asdict(DKVBConfig())["key_init_source"] == "sklearn_digits"
