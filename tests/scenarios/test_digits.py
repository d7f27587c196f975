"""scikit-learn's digits (scenarios/sources/digits.py): a fixed, stratified train/test split."""
import torch

from scenarios.sources import digits


def test_digits_split_is_fixed_and_stratified():
    a, b = digits.load(None), digits.load(None)
    assert (len(a.train), len(a.test)) == (1347, 450) and a.input_shape == (1, 8, 8)
    assert a.train.x.shape[1:] == (1, 8, 8) and float(a.train.x.max()) == 1.0 and float(a.train.x.min()) == 0.0
    assert torch.equal(a.test.y, b.test.y) and a.test.fingerprint == b.test.fingerprint
    n_train, n_test = torch.bincount(a.train.y, minlength=10), torch.bincount(a.test.y, minlength=10)
    share = n_test.float() / (n_train + n_test).float()
    assert torch.all((share - 0.25).abs() < 0.01), share  # stratified: every class ~25% in test
