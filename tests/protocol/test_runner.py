"""``protocol.run`` (clbench.protocol.runner) on a synthetic stream: the matrix's shape, row 0
and the saved record; a failed run keeps its completed rows; ``channels_last`` (the default)
converts the live learner and keeps the results close."""
import pytest
import torch

from clbench import protocol
from clbench.protocol import RunSettings
from clbench.results import records

from probes import Probe
from synthetic import blob_scenario


def settings(tmp_path, **kw):
    return RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_matrix_shape_row_zero_and_record(tmp_path):
    scenario = blob_scenario(n_exp=3)
    record, path = protocol.run(scenario, Probe(info=scenario.info), settings=settings(tmp_path))
    assert len(record.matrix) == 4 and all(len(r) == 3 for r in record.matrix)
    assert record.status == "complete" and record.experiences_done == 3
    assert len(record.union_accuracy) == 3 and len(record.timing["train_s"]) == 3
    # class-incremental: nothing is seen before training, later experiences are masked out
    assert record.matrix[0] == [0.0, 0.0, 0.0] and record.matrix[1][1:] == [0.0, 0.0]
    # the probe predicts the first allowed class: half of exp 1 (classes 0, 1) is right after step 1
    assert record.matrix[1][0] == 0.5
    assert path.exists() and records.load(path).matrix == record.matrix


def test_failure_keeps_completed_rows(tmp_path):
    class Crashes(Probe):
        def end_experience(self):
            super().end_experience()
            if self.calls.count("end") == 2:
                raise RuntimeError("boom")

    scenario = blob_scenario()
    with pytest.raises(RuntimeError, match="boom"):
        protocol.run(scenario, Crashes(info=scenario.info), settings=settings(tmp_path))
    (path,) = records.find(tmp_path)
    saved = records.load(path)
    assert saved.status == "failed" and "boom" in saved.error
    assert saved.experiences_done == 1 and len(saved.matrix) == 2


def test_channels_last_is_the_default_that_converts_the_learner_and_keeps_results_close(tmp_path):
    """``channels_last`` (the default): the live learner's conv weights in channels_last
    format (faster oneDNN/cuDNN kernels); ``channels_last=false`` leaves them contiguous.
    Results agree to float noise, and the record says which was used."""
    from clbench import protocol
    from clbench.models.backbones import BACKBONE_PRESETS
    from clbench.api.strategy import STRATEGIES
    from synthetic import image_blob_scenario

    assert protocol.RunSettings().channels_last is True and protocol.RunSettings().eval_batch_size == 128

    seen = {}
    out = {}
    for flag in (False, True):
        sc = image_blob_scenario(side=28, per_class=16, test_per_class=8)
        torch.manual_seed(0)  # both learners start from the same weights, whatever ran before
        strategy = STRATEGIES.get("naive")(STRATEGIES.get("naive").config_class(name="naive", epochs=1, batch_size=16),
                                           sc.info_for(0.0), BACKBONE_PRESETS["cnn28"], seed=0)
        original = strategy.observe

        def observe(batch, strategy=strategy, flag=flag):
            conv = [m for m in strategy.modules() if isinstance(m, torch.nn.Conv2d)][-1]  # (128, 64, 3, 3)
            seen[flag] = conv.weight.is_contiguous(memory_format=torch.channels_last)
            return original(batch)

        strategy.observe = observe
        settings = protocol.RunSettings(results_dir=str(tmp_path / str(flag)), progress=False, device="cpu",
                                        val_fraction=0.0, channels_last=flag)
        out[flag], _ = protocol.run(sc, strategy, settings=settings, config={"channels_last": flag})
    assert seen == {False: False, True: True}
    a, b = torch.tensor(out[False].matrix), torch.tensor(out[True].matrix)
    assert torch.allclose(a, b, atol=0.1)  # the same learning up to last-bit differences
    assert out[True].config["channels_last"] is True


def test_channels_last_also_reaches_modules_built_in_prepare_and_begin_experience(tmp_path):
    """A trunk a strategy builds in ``prepare()`` (pretrained, loaded) and a module it grows in
    ``begin_experience`` train in channels_last too, so the record's ``channels_last: true`` is
    true of the whole learner (a 5-d parameter beside them is no error); with
    ``channels_last=false`` they stay contiguous."""
    from torch import nn

    from clbench import protocol
    from clbench.models.backbones import BACKBONE_PRESETS
    from clbench.api.strategy import STRATEGIES
    from synthetic import image_blob_scenario

    naive = STRATEGIES.get("naive")

    class Growing(naive):
        def prepare(self, aux):
            super().prepare(aux)
            self.built_in_prepare = nn.Conv2d(3, 4, 3)

        def begin_experience(self, info):
            super().begin_experience(info)
            setattr(self, f"grown_{info.index}", nn.Conv2d(3, 4, 3))
            self.bank = nn.Parameter(torch.zeros(2, 3, 4, 5, 6))  # 5-d (a prompt bank): left as it is

        def observe(self, batch):
            convs = {name: m.weight.is_contiguous(memory_format=torch.channels_last)
                     for name, m in self.named_modules() if name.startswith(("built_in_prepare", "grown_"))}
            seen.setdefault(flag, set()).update(convs.items())
            return super().observe(batch)

    seen: dict = {}
    for flag in (True, False):
        sc = image_blob_scenario(side=28, per_class=8, test_per_class=4)
        strategy = Growing(naive.config_class(name="naive", epochs=1, batch_size=16), sc.info_for(0.0),
                           BACKBONE_PRESETS["cnn28"], seed=0)
        settings = protocol.RunSettings(results_dir=str(tmp_path / str(flag)), progress=False, device="cpu",
                                        val_fraction=0.0, channels_last=flag)
        protocol.run(sc, strategy, settings=settings)
    assert {name for name, _ in seen[True]} >= {"built_in_prepare", "grown_0", "grown_1"}
    assert all(is_cl for _, is_cl in seen[True]) and not any(is_cl for _, is_cl in seen[False])


def test_a_strategy_that_opts_out_of_channels_last_trains_contiguous_and_its_record_says_so(tmp_path):
    """``channels_last_ok = False`` (Avalanche's own strategies): nothing is converted under
    the default ``channels_last: true``, and the record says the learner kept the standard format."""
    from clbench import protocol
    from clbench.models.backbones import BACKBONE_PRESETS
    from clbench.api.strategy import STRATEGIES
    from synthetic import image_blob_scenario

    naive = STRATEGIES.get("naive")
    formats = set()

    class Contiguous(naive):
        channels_last_ok = False

        def observe(self, batch):
            formats.update(m.weight.is_contiguous(memory_format=torch.channels_last)
                           for m in self.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
            return super().observe(batch)

    sc = image_blob_scenario(side=28, per_class=8, test_per_class=4)
    strategy = Contiguous(naive.config_class(name="naive", epochs=1, batch_size=16), sc.info_for(0.0),
                          BACKBONE_PRESETS["cnn28"], seed=0)
    record, _ = protocol.run(sc, strategy, settings=protocol.RunSettings(results_dir=str(tmp_path), progress=False,
                                                                         device="cpu", val_fraction=0.0))
    assert formats == {False}
    assert record.extra["memory_format"].startswith("contiguous")
