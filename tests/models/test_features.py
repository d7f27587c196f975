"""The frozen-encoder feature cache (clbench.models.features): keyed by encoder, transform and
data; atomic; optional; keyed by content, weights and code (never another copy of the
same-named data; features only, the labels come from the dataset; a code change of the
encoder is a new entry)."""
import importlib
import linecache
import sys

import pytest
import torch
from torch import nn

from clbench.models import features
from clbench.models.backbones import BackboneConfig, create_backbone
from clbench.api.data import TensorData


def data(n=40, seed=0, fingerprint=None):
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g), fingerprint=fingerprint)


def cnn(normalize="none", input_size=None, seed=0):
    torch.manual_seed(seed)
    return create_backbone(BackboneConfig(name="cnn28", normalize=normalize,
                                          input_size=input_size), (1, 28, 28))


class Linear(torch.nn.Linear):
    """A small encoder worth caching (Flatten is not cached at all)."""

    def __init__(self):
        torch.manual_seed(0)
        super().__init__(784, 5)

    def forward(self, x):
        return super().forward(x.flatten(1))


def test_second_encode_reads_the_cache_without_calling_the_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path))
    d = data()
    first = features.encode(cnn(), d, device=torch.device("cpu"), batch_size=16)
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1
    again = cnn()
    monkeypatch.setattr(type(again.trunk), "forward", lambda *a: (_ for _ in ()).throw(AssertionError("encoder ran")))
    hits = features.stats["hits"]
    second = features.encode(again, d, device=torch.device("cpu"), batch_size=16)
    assert features.stats["hits"] == hits + 1
    assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y)
    assert second.fingerprint == first.fingerprint
    assert not list((tmp_path / "features").glob(".*.tmp")), "temporary file left behind"


def test_key_changes_with_weights_transform_and_data():
    cpu = torch.device("cpu")
    base = features.cache_key(cnn(), data(), cpu)
    assert features.cache_key(cnn(), data(), cpu) == base  # same weights, same data: same key
    assert features.cache_key(cnn(seed=1), data(), cpu) != base  # other weights
    assert features.cache_key(cnn(normalize="imagenet"), data(), cpu) != base  # other (non-persistent) normalisation
    assert features.cache_key(cnn(input_size=32), data(), cpu) != base  # other resize, same tensors
    assert features.cache_key(cnn(), data(seed=1), cpu) != base  # other content
    # content-addressed: the same inputs under another name share the entry
    assert features.cache_key(cnn(), data(fingerprint="fmnist/train"), cpu) == base


def test_cache_off_by_env_or_argument_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_CACHE", "off")
    assert features.cache_dir() is None
    features.encode(Linear(), data(), device=torch.device("cpu"))
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path))
    features.encode(Linear(), data(), device=torch.device("cpu"), cache=False)
    assert not list(tmp_path.iterdir())


def test_damaged_cache_entry_is_recomputed(tmp_path):
    d, enc = data(), Linear()
    good = features.encode(enc, d, device=torch.device("cpu"), cache=tmp_path)
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(b"not a torch file")
    again = features.encode(enc, d, device=torch.device("cpu"), cache=tmp_path)
    assert torch.equal(good.x, again.x)
    assert torch.load(path, weights_only=True)["features"].shape == (40, 5)


def test_multilabel_masks_survive_the_cache(tmp_path):
    x = torch.rand(10, 1, 28, 28)
    d = TensorData(x, torch.zeros(10, 3), known=torch.rand(10, 3) > 0.5)
    a = features.encode(Linear(), d, device=torch.device("cpu"), cache=tmp_path)
    b = features.encode(Linear(), d, device=torch.device("cpu"), cache=tmp_path)
    assert torch.equal(a.known, d.known) and torch.equal(b.known, d.known) and len(list(tmp_path.glob("*.pt"))) == 1


def test_identity_features_are_not_written_to_disk(tmp_path):
    out = features.encode(features.Flatten(), data(), device=torch.device("cpu"), cache=tmp_path)
    assert out.x.shape == (40, 784) and not list(tmp_path.iterdir())


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="valid choices: 'backbone', 'identity'"):
        features.build_frozen_encoder("resnet", None, (1, 28, 28))


def _enc(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def test_cache_never_serves_another_copy_of_the_same_named_data(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, 4, 4, generator=g)
    y = torch.arange(30) % 3
    plain = TensorData(x, y, fingerprint="fmnist/train")
    inverted = TensorData(1 - x, y, fingerprint="fmnist/train")  # same name, same labels, other pixels
    enc = _enc()
    a = features.encode(enc, plain, device=torch.device("cpu"), cache=tmp_path)
    b = features.encode(enc, inverted, device=torch.device("cpu"), cache=tmp_path)
    assert not torch.allclose(a.x, b.x)
    assert torch.allclose(b.x, enc(1 - x), atol=1e-6)
    perm0, perm1 = torch.randperm(16, generator=g), torch.randperm(16, generator=g)  # "PermutedMNIST" seeds
    p0 = TensorData(x.flatten(1)[:, perm0].view_as(x), y, fingerprint="permuted")
    p1 = TensorData(x.flatten(1)[:, perm1].view_as(x), y, fingerprint="permuted")
    rot = TensorData(torch.rot90(x, 1, (2, 3)), y, fingerprint="permuted")
    keys = {features.cache_key(enc, d, torch.device("cpu")) for d in (p0, p1, rot, plain)}
    assert len(keys) == 4


def test_cache_stores_features_only_and_labels_come_from_the_dataset(tmp_path):
    x, y = torch.rand(12, 1, 4, 4), torch.arange(12) % 3
    enc = _enc()
    features.encode(enc, TensorData(x, y), device=torch.device("cpu"), cache=tmp_path)
    (path,) = tmp_path.glob("*.pt")
    assert set(torch.load(path, weights_only=True)) == {"features"}
    relabelled = features.encode(enc, TensorData(x, (y + 1) % 3), device=torch.device("cpu"), cache=tmp_path)
    assert torch.equal(relabelled.y, (y + 1) % 3)  # a hit, with the dataset's own labels


ENCODER_SOURCE = '''
import torch.nn.functional as F
from torch import nn


class Resizer(nn.Module):
    def forward(self, x):
        return F.interpolate(x, size=(8, 8), mode="{mode}").flatten(1)
'''


def test_a_code_change_in_the_encoder_is_a_new_cache_entry(tmp_path, monkeypatch):
    pkg = tmp_path / "encmod"
    pkg.mkdir()
    monkeypatch.syspath_prepend(str(pkg))
    file = pkg / "clbench_test_encoder.py"
    keys = []
    data = TensorData(torch.rand(5, 1, 4, 4), torch.zeros(5, dtype=torch.long))
    for mode in ("bilinear", "nearest"):
        file.write_text(ENCODER_SOURCE.format(mode=mode))
        linecache.clearcache()
        sys.modules.pop("clbench_test_encoder", None)
        module = importlib.import_module("clbench_test_encoder")
        keys.append(features.cache_key(module.Resizer(), data, torch.device("cpu")))
    assert keys[0] != keys[1]
