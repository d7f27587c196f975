"""The runner of `clbench run` (clbench.cli.launch): the record's path printed unbroken and the
W&B sync hint once; a stopped run ends in one line; a strategy's preferred backbone is used
unless the user names one."""
from __future__ import annotations

import pytest

from clbench import protocol

from handmade_records import make_record
from probes import Bias


def test_cli_prints_the_record_path_unbroken_and_the_sync_hint_once(tmp_path, capsys, monkeypatch):
    from omegaconf import OmegaConf

    from clbench.cli import launch
    from clbench.loggers import wandb_logger

    deep = tmp_path / ("a-very-long-folder-name-" * 4) / "runs" / "toy" / "naive" / "20261126T000000-s0-abcdef.json"
    wdir = str(tmp_path / "wandb" / "offline-run-20261126_000000-abc")
    rec = make_record()
    rec.environment = {"logs": {"WandbLogger": wdir}}

    def fake_run(cfg):
        wandb_logger.FINISHED.append(wdir)
        return rec, deep

    monkeypatch.setattr(launch, "run_from_config", fake_run)
    monkeypatch.setenv("COLUMNS", "60")
    cfg = OmegaConf.create({"seed": 0, "results_dir": str(tmp_path), "strategy": {"epochs": 1}, "scenario": {}})
    assert launch.execute(cfg) == 0
    out = capsys.readouterr().out
    assert f"record: {deep}" in out  # on one line, not wrapped mid-name
    assert out.count(f"wandb sync {wdir}") == 1


@pytest.mark.parametrize("error, code, words", [
    (KeyboardInterrupt(), 130, "run interrupted (Ctrl-C)"),
    (FloatingPointError("non-finite training loss (nan) at step 12 of experience 3"), 1, "run failed: non-finite"),
])
def test_a_stopped_run_ends_in_one_line(tmp_path, capsys, monkeypatch, error, code, words):
    from omegaconf import OmegaConf

    from clbench.cli import launch

    def stop(cfg):
        raise error

    monkeypatch.setattr(launch, "run_from_config", stop)
    cfg = OmegaConf.create({"seed": 0, "results_dir": str(tmp_path), "strategy": {}, "scenario": {}})
    assert launch.execute(cfg) == code
    err = capsys.readouterr().err
    assert words in err and "keeps the rows done so far" in err and len(err.strip().splitlines()) == 1


class WantsViT(Bias):
    @classmethod
    def preferred_backbone(cls, info):
        return "vit_small"


def test_preferred_backbone_unless_the_user_names_one(tmp_path, monkeypatch):
    from clbench.cli import launch
    from clbench.config import compose

    captured = {}

    def fake_run(scenario, strategy, **kw):
        captured["backbone"] = strategy.backbone_config.name
        raise SystemExit

    monkeypatch.setattr(protocol, "run", fake_run)
    from clbench.api.strategy import STRATEGIES

    monkeypatch.setitem(STRATEGIES._items, "naive", type("WantsViTNaive", (STRATEGIES.get("naive"),),
                                                          {"preferred_backbone": classmethod(lambda c, i: "vit_small")}))
    base = ["strategy=naive", "scenario=split_digits", "logger=none", f"results_dir={tmp_path}"]
    for extra, expected in (([], "vit_small"), (["backbone=cnn28"], "cnn28")):
        with pytest.raises(SystemExit):
            launch.run_from_config(compose(base + extra))
        assert captured["backbone"] == expected
