"""Start-up: the config index (clbench.config.index), torch-free refusals and listing,
and runs that import only their own strategy's and scenario's modules.

Subprocesses, each with its own cache folder: what a process has imported is the point.
No timings are asserted (bench/startup.py measures them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clbench.config import index as config_index

REFUSALS = [
    ["strategy=nope"],
    ["scenario=split_fmist"],
    ["backbone=nope"],
    ["logger=nope"],
    ["addon=nope"],
    ["strategy=er", "strategy.bogus=1"],
    ["scenario.bogus=1"],
    ["backbone.bogus=1"],
    ["strategy.epochs=abc"],
    ["strategy=er", "strategy.buffer_size=lots"],
    ["scenario.class_order=abc"],
    ["strategy.epochs=0"],
]


def python(code: str, cache: object, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CLBENCH_CACHE=str(cache), WANDB_MODE="offline")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def refusals_code(cases: list[list[str]]) -> str:
    return ("import sys, io, json, contextlib\n"
            "from clbench.cli import main\n"
            "out = []\n"
            f"for args in {cases!r}:\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err):\n"
            "        rc = main(['run', *args])\n"
            "    out.append([rc, err.getvalue()])\n"
            "heavy = sorted(m for m in ('torch', 'torchvision', 'avalanche', 'timm', 'wandb') if m in sys.modules)\n"
            "plugins = sorted(m for m in sys.modules if m.startswith(('strategies.', 'scenarios.')))\n"
            "print(json.dumps({'out': out, 'heavy': heavy, 'plugins': plugins}))\n")


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    """A cache folder holding a fresh index (written by a full load of the plugins)."""
    cache = tmp_path_factory.mktemp("cache")
    out = python("from clbench.config import load_plugins; load_plugins()", cache, cache)
    assert out.returncode == 0, out.stderr
    assert list(cache.glob("config-index-*.json")), "the full load wrote no index"
    return cache


def test_refusals_import_no_torch_and_match_the_full_load(indexed, tmp_path):
    fast = python(refusals_code(REFUSALS), indexed, tmp_path)
    assert fast.returncode == 0, fast.stderr
    fast_facts = json.loads(fast.stdout.splitlines()[-1])
    assert fast_facts["heavy"] == [] and fast_facts["plugins"] == [], fast_facts
    slow = python(refusals_code(REFUSALS), "off", tmp_path)
    assert slow.returncode == 0, slow.stderr
    slow_facts = json.loads(slow.stdout.splitlines()[-1])
    assert "torch" in slow_facts["heavy"]  # the slow path really is the full load
    for args, (rc, message), (slow_rc, slow_message) in zip(REFUSALS, fast_facts["out"], slow_facts["out"]):
        assert rc == slow_rc == 2, (args, message, slow_message)
        assert message == slow_message, args
        assert message.startswith("clbench: error: ") and message.count("\n") == 1, message
    by_args = {" ".join(a): m for a, (_, m) in zip(REFUSALS, fast_facts["out"])}
    assert "'nope'" in by_args["strategy=nope"] and "naive" in by_args["strategy=nope"]
    assert "'bogus'" in by_args["strategy=er strategy.bogus=1"] and "buffer_size" in by_args["strategy=er strategy.bogus=1"]
    assert "strategy.epochs" in by_args["strategy.epochs=abc"] and "abc" in by_args["strategy.epochs=abc"]
    assert "split_fmnist" in by_args["scenario=split_fmist"]


def test_list_reads_the_index_and_matches_the_full_load(indexed, tmp_path):
    code = ("import sys\nfrom clbench.cli import main\nrc = main(['list'])\n"
            "print('torch' in sys.modules, sorted(m for m in sys.modules if m.startswith(('strategies.', 'scenarios.'))))")
    fast, slow = python(code, indexed, tmp_path), python(code, "off", tmp_path)
    assert fast.returncode == 0 and slow.returncode == 0, fast.stderr + slow.stderr
    assert fast.stdout.splitlines()[-1] == "False []"
    assert fast.stdout.splitlines()[:-1] == slow.stdout.splitlines()[:-1]
    assert "split_fmnist" in fast.stdout and "tame" in fast.stdout


def test_every_experiment_composes_from_the_index_as_from_the_configs(indexed, tmp_path):
    """The fast path never refuses what the full composition accepts, and builds the same config."""
    from clbench.config import CONF_DIR

    names = sorted(str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
                   for p in (CONF_DIR / "experiment").rglob("*.yaml"))
    cases = [[f"experiment={n}"] for n in names] + [["debug=fast"], ["strategy=tame", "backbone=lenet5"],
                                                    ["strategy=multilane", "scenario=mlfmnist"]]
    code = ("import json, sys\n"
            "from omegaconf import OmegaConf\n"
            "from clbench.config import index as config_index\n"
            "from clbench.config import compose\n"
            f"cases = {cases!r}\n"
            "fast = []\n"
            "with config_index.synthetic():\n"
            "    for c in cases:\n"
            "        fast.append(OmegaConf.to_container(compose(c), resolve=False))\n"
            "torch_then = 'torch' in sys.modules\n"
            "slow = [OmegaConf.to_container(compose(c), resolve=False) for c in cases]\n"
            "types = {c[0]: type(OmegaConf.to_object(compose(c).strategy)).__module__ for c in cases}\n"
            "print(json.dumps({'same': [a == b for a, b in zip(fast, slow)], 'torch': torch_then, 'types': types}))\n")
    out = python(code, indexed, tmp_path)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout.splitlines()[-1])
    assert facts["torch"] is False
    assert all(facts["same"]), [c for c, same in zip(cases, facts["same"]) if not same]
    assert all(m.startswith("strategies.") for m in facts["types"].values()), facts["types"]  # real config classes


def test_a_run_imports_only_its_strategy_and_scenario(indexed, tmp_path):
    code = ("import sys\n"
            "from omegaconf import OmegaConf\n"
            "from clbench.config import compose\n"
            "from clbench.api.scenario import SCENARIOS\n"
            "from clbench.api.strategy import STRATEGIES\n"
            "from scenarios.sources import SOURCES\n"
            "cfg = compose(['strategy=naive', 'scenario=split_fmnist', 'seed=0', 'logger=none', 'progress=false'])\n"
            "cls = STRATEGIES.get(cfg.strategy.name)\n"
            "config = OmegaConf.to_object(cfg.strategy)\n"
            "assert isinstance(config, cls.config_class), type(config)\n"
            "SCENARIOS.get(cfg.scenario.name)\n"
            "SOURCES.source('fmnist')\n"
            "from clbench.models.backbones import BACKBONES; BACKBONES.get(cfg.backbone.name)\n"
            "from clbench.loggers import LOGGERS; LOGGERS.get(cfg.logger.name)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('strategies.', 'scenarios.'))))\n"
            "print(sorted(m for m in ('torchvision', 'avalanche', 'timm', 'wandb', 'matplotlib', 'sklearn') "
            "if m in sys.modules))\n")
    out = python(code, indexed, tmp_path)
    assert out.returncode == 0, out.stderr
    plugins, heavy = out.stdout.splitlines()[-2:]
    assert eval(plugins) == ["scenarios.class_incremental", "scenarios.sources", "scenarios.sources.fmnist",
                             "scenarios.sources.images", "strategies.baselines"]
    assert eval(heavy) == []


def test_load_plugins_still_imports_every_module(indexed, tmp_path):
    code = ("import sys\n"
            "from clbench.config import load_plugins\n"
            "from clbench.api.strategy import STRATEGIES\n"
            "load_plugins()\n"
            "import strategies, scenarios\n"
            "missing = [f'{p.__name__}.{m}' for p in (strategies, scenarios) for m in p.plugin_modules\n"
            "           if f'{p.__name__}.{m}' not in sys.modules]\n"
            "print(missing, len(STRATEGIES.names()))\n")
    out = python(code, indexed, tmp_path)
    assert out.returncode == 0, out.stderr
    missing, count = out.stdout.split("]")
    assert missing == "[" and int(count) >= 20


def test_a_stale_index_is_ignored_and_rebuilt(indexed, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (path,) = indexed.glob("config-index-*.json")
    data = json.loads(path.read_text())
    data["fingerprint"] = "stale"
    data["listing"]["strategies"] = {"only_in_the_stale_index": {"needs": [], "kinds": [], "paper_recipe": False}}
    (cache / path.name).write_text(json.dumps(data))
    code = ("import sys\nfrom clbench.cli import main\nrc = main(['run', 'strategy=nope'])\n"
            "print(rc, 'torch' in sys.modules)")
    out = python(code, cache, tmp_path)
    assert out.stdout.split() == ["2", "True"], out.stderr  # the slow path, which rewrites the index
    assert "only_in_the_stale_index" not in out.stderr
    rebuilt = json.loads((cache / path.name).read_text())
    assert rebuilt["fingerprint"] == json.loads(path.read_text())["fingerprint"] != "stale"
    assert "naive" in rebuilt["listing"]["strategies"]
    again = python(code, cache, tmp_path)
    assert again.stdout.split() == ["2", "False"], again.stderr  # fresh again: no torch


def test_the_fingerprint_follows_the_plugin_sources(tmp_path, monkeypatch):
    """Path, size and mtime of every .py file of a plugin package change the fingerprint."""
    pkg = tmp_path / "myplugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("X = 1\n")
    real = config_index._package_dirs
    monkeypatch.setattr(config_index, "_package_dirs", lambda: [*real(), ("myplugin", pkg)])
    before = config_index.fingerprint()
    assert config_index.fingerprint() == before
    (pkg / "mod.py").write_text("X = 12\n")
    changed = config_index.fingerprint()
    assert changed != before
    (pkg / "new.py").write_text("")
    assert config_index.fingerprint() != changed


def test_no_index_when_the_cache_is_off(tmp_path):
    code = ("import sys\nfrom clbench.config import load_plugins\nload_plugins()\n"
            "from clbench.config import index as config_index\nprint(config_index.index_path(), config_index.is_fresh())")
    out = python(code, "off", tmp_path)
    assert out.returncode == 0 and out.stdout.split() == ["None", "False"], out.stderr


def test_option_keys_from_the_index_and_the_full_load(indexed, tmp_path):
    code = ("import sys, json\nfrom clbench.config.finder import option_keys\n"
            "keys = {g + '/' + n: option_keys(g, n) for g, n in [('strategy', 'er'), ('scenario', 'split_fmnist'), "
            "('backbone', 'lenet5'), ('addon', 'fpf'), ('logger', 'none')]}\n"
            "keys['nope'] = option_keys('strategy', 'nope')\n"
            "print(json.dumps({'keys': keys, 'torch': 'torch' in sys.modules}))")
    fast, slow = python(code, indexed, tmp_path), python(code, "off", tmp_path)
    assert fast.returncode == 0 and slow.returncode == 0, fast.stderr + slow.stderr
    f, s = json.loads(fast.stdout.splitlines()[-1]), json.loads(slow.stdout.splitlines()[-1])
    assert f["torch"] is False and s["torch"] is True
    assert f["keys"] == s["keys"]
    assert f["keys"]["strategy/er"][:3] == ["name", "epochs", "batch_size"] and "buffer_size" in f["keys"]["strategy/er"]
    assert "defaults" not in f["keys"]["scenario/split_fmnist"] and "train_per_class" in f["keys"]["scenario/split_fmnist"]
    assert f["keys"]["nope"] is None


def test_test_doubles_stay_out_of_the_index(tmp_path):
    """Names registered outside clbench and its plugin packages (tests, scripts) are not indexed."""
    code = ("import dataclasses, json\n"
            "from clbench.api.strategy import Strategy, StrategyConfig, register_strategy\n"
            "@dataclasses.dataclass\n"
            "class DoubleConfig(StrategyConfig):\n"
            "    pass\n"
            "@register_strategy('indexed_double')\n"
            "class Double(Strategy):\n"
            "    config_class = DoubleConfig\n"
            "from clbench.config import load_plugins\n"
            "load_plugins()\n"
            "from clbench.config import index as config_index\n"
            "(path,) = config_index.index_path().parent.glob('config-index-*.json')\n"
            "print(path.read_text())\n")
    out = python(code, tmp_path / "cache", tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "indexed_double" not in data["groups"]["strategy"]
    assert "indexed_double" not in data["registries"]["strategy"]
    assert "indexed_double" not in data["listing"]["strategies"]
    assert data["registries"]["strategy"]["naive"] == "strategies.baselines"
    assert data["registries"]["data source"]["fmnist"] == "scenarios.sources.fmnist"
    assert data["groups"]["scenario"]["split_fmnist"]["module"] == "scenarios.class_incremental"
    assert data["groups"]["backbone"]["lenet5"]["module"] == "strategies.tame"
    assert data["groups"]["backbone"]["cnn28"]["module"] == config_index.BUILTINS


@pytest.mark.parametrize("text", ["int", "Optional[List[int]]", "Dict[str, Any]", "List[Any]", "Optional[str]"])
def test_type_names_round_trip(text):
    assert config_index.type_name(config_index.parse_type(text)) == text
