"""Reference points (strategies/baselines.py) on real Fashion-MNIST through the CLI's code
path: naive forgets, joint does not, experience replay lies in between."""
import pytest

from clbench.cli.launch import run_from_config
from clbench.config import compose

from conftest import small_run_overrides


def run(tmp_path, *overrides, **kw):
    return run_from_config(compose(small_run_overrides(tmp_path, *overrides, **kw)))


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_naive_forgets_joint_does_not_er_between(tmp_path):
    # A fixed class order that keeps Fashion-MNIST's upper-body cluster (T-shirt, Pullover,
    # Coat, Shirt) in the last two experiences: then what joint "forgets" is training noise,
    # not new confusable classes arriving.
    common = ("scenario=split_fmnist", "seed=0", "scenario.class_order=[1,8,5,7,9,3,0,2,4,6]",
              "strategy.epochs=3", "strategy.optimizer=adam", "strategy.lr=0.001", "strategy.batch_size=32")
    fgt = {}
    for name in ("naive", "joint", "er"):
        extra = ("strategy.buffer_size=200",) if name == "er" else ()
        record, _ = run(tmp_path, f"strategy={name}", *common, *extra, train_per_class=250, test_per_class=60)
        assert record.status == "complete" and len(record.matrix) == 6
        fgt[name] = record.metrics["FGT"]
    assert fgt["naive"] > 0.5, fgt
    assert fgt["joint"] < 0.1, fgt
    assert fgt["joint"] < fgt["er"] < fgt["naive"], fgt
