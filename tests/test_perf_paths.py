"""The fast paths of issue 17 change speed only: evaluation under inference_mode scores
exactly what a plain loop scores, resident data sets batch in the same order, and the
setup phases (DKVB key init, trunk pretraining) show progress. No timed assertions."""
from __future__ import annotations

import io

import pytest
import torch

from clbench.models.backbones import BackboneConfig
from clbench.api.data import TensorData, iterate, resident
from clbench.protocol.evaluation import Evaluator, score_mixed
from clbench.models.pretrain import pretrain_backbone
from clbench.progress import PhaseProgress, run_progress, setup_progress
from clbench.api.scenario import Scenario
from clbench.types import CLASS_INCREMENTAL, Experience


def tiny_scenario(n=40, seed=0) -> Scenario:
    g = torch.Generator().manual_seed(seed)
    exps = []
    for i, classes in enumerate([(0, 1), (2, 3)]):
        y = torch.tensor(classes).repeat(n // 2)
        x = torch.rand(n, 1, 4, 4, generator=g)
        data = TensorData(x, y)
        exps.append(Experience(i, data, TensorData(x.clone(), y.clone()), classes, i))
    return Scenario(name="tiny", kind=CLASS_INCREMENTAL, experiences=exps, num_classes=4, input_shape=(1, 4, 4),
                    class_order=[0, 1, 2, 3], class_names=[str(c) for c in range(4)])


def test_score_mixed_runs_under_inference_mode_and_scores_like_a_plain_loop():
    sc = tiny_scenario()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4)).eval()
    modes = []

    def predict(x, task=None):
        modes.append(torch.is_inference_mode_enabled())
        return model(x)

    test_sets = [e.test for e in sc.experiences]
    scored = score_mixed(predict, Evaluator(), sc, 2, test_sets, device=torch.device("cpu"), batch_size=7,
                         generator=torch.Generator().manual_seed(3))
    assert modes and all(modes)
    with torch.no_grad():  # the plain loop: every sample on its own, argmax over the seen classes
        expected = torch.cat([(model(d.x).argmax(1) == d.y).to(torch.uint8) for d in test_sets])
    assert torch.equal(scored.kept, expected)


def test_eval_batch_size_does_not_change_a_per_sample_models_row():
    sc = tiny_scenario()
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    model.eval()
    test_sets = [e.test for e in sc.experiences]
    rows = [score_mixed(lambda x, t=None: model(x), Evaluator(), sc, 2, test_sets, device=torch.device("cpu"),
                        batch_size=bs, generator=torch.Generator().manual_seed(5)).kept for bs in (512, 16, 3)]
    assert torch.equal(rows[0], rows[1]) and torch.equal(rows[0], rows[2])


def test_resident_is_a_no_op_on_the_cpu_and_iteration_order_is_the_generators():
    data = TensorData(torch.arange(50.0).view(50, 1), torch.arange(50))
    assert resident(data, torch.device("cpu")) is data
    a = [b[1] for b in iterate(data, 8, shuffle=True, generator=torch.Generator().manual_seed(4))]
    b = [b[1] for b in iterate(data, 8, shuffle=True, generator=torch.Generator().manual_seed(4))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_resident_data_on_the_gpu_batches_like_the_cpu():
    data = TensorData(torch.rand(50, 1, 4, 4), torch.arange(50))
    on_gpu = resident(data, torch.device("cuda"))
    assert on_gpu.x.is_cuda and on_gpu.fingerprint == data.fingerprint
    a = [b[0] for b in iterate(data, 8, shuffle=True, generator=torch.Generator().manual_seed(4))]
    b = [b[0].cpu() for b in iterate(on_gpu, 8, shuffle=True, generator=torch.Generator().manual_seed(4))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_setup_progress_reports_to_the_run_progress_or_to_stderr(capsys):
    with setup_progress("setup thing", 3) as advance:
        for _ in range(3):
            advance(1)
    assert "setup thing: done in" in capsys.readouterr().err
    buf = io.StringIO()
    with PhaseProgress(True, mode="lines", stream=buf) as progress, run_progress(progress):
        with setup_progress("setup thing", 3) as advance:
            advance(3)
    assert "setup thing: done in" in buf.getvalue() and "3 steps" in buf.getvalue()
    with PhaseProgress(False) as progress, run_progress(progress):  # progress=false: silent
        with setup_progress("setup thing", 3) as advance:
            assert advance is None
    assert capsys.readouterr().err == ""


def test_dkvb_key_init_and_trunk_pretraining_show_progress(capsys, tmp_path):
    from clbench.types import VISIBILITY_BY_KIND, ScenarioInfo
    from strategies.dkvb import DKVB, DKVBConfig

    info = ScenarioInfo("t", CLASS_INCREMENTAL, (1, 4, 4), 4, VISIBILITY_BY_KIND[CLASS_INCREMENTAL])
    cfg = DKVBConfig(encoder="identity", num_codebooks=4, pairs_per_codebook=8, key_init_steps=6, batch_size=8)
    strategy = DKVB(cfg, info, None, seed=0)
    assert strategy.fit_keys(torch.rand(30, 16, generator=torch.Generator().manual_seed(0))) == 6
    err = capsys.readouterr().err
    assert "dkvb key init" in err and "6 steps" in err

    g = torch.Generator().manual_seed(0)
    data = TensorData(torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g))
    path, facts = pretrain_backbone(BackboneConfig(width=4), (1, 28, 28), data, epochs=1, seed=0, batch_size=16,
                                    device=torch.device("cpu"), cache_dir=tmp_path, file_prefix="t", key_settings={},
                                    meta={})
    assert path.is_file() and not facts["cached"]
    assert "pretrain t: done in" in capsys.readouterr().err


def test_channels_last_is_an_opt_in_that_converts_the_learner_and_keeps_results_close(tmp_path):
    """``channels_last=true``: the live learner's conv weights in channels_last format
    (faster oneDNN/cuDNN kernels); the default leaves them contiguous. Results agree to
    float noise, and the record says which was used."""
    from clbench import protocol
    from clbench.models.backbones import BACKBONE_PRESETS
    from clbench.api.strategy import STRATEGIES
    from synthetic import image_blob_scenario

    seen = {}
    out = {}
    for flag in (False, True):
        sc = image_blob_scenario(side=28, per_class=16, test_per_class=8)
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
