"""Every config field of every registered strategy, scenario and add-on has a one-line help
text (clbench.fields.setting(default, "help", ...), read through clbench.fields), so that
`clbench run ... --help` and `clbench list NAME` describe every key. Registry-driven: a
new strategy, scenario or add-on is checked without a new test."""
from __future__ import annotations

#: keys a registration sets rather than a user (clbench.cli.main.STRUCTURAL_HELP describes them)
STRUCTURAL = {"name", "kind", "default_backbone", "defaults"}


def _registered_configs() -> dict[str, type]:
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from clbench.config import load_plugins, store_configs

    store_configs()
    load_plugins()
    repo = ConfigStore.instance().repo
    found = {}
    for group in ("strategy", "scenario", "addon"):
        for key in sorted(repo.get(group, {})):
            name = key[:-5]
            cls = OmegaConf.get_type(repo[group][key].node)
            if name.startswith("_") or not cls.__module__.startswith(("strategies", "scenarios", "clbench")):
                continue  # test doubles
            found[f"{group}={name}"] = cls
    return found


def test_every_field_of_every_registered_config_has_a_help_text():
    from clbench.cli.main import STRUCTURAL_HELP
    from clbench.fields import describe_fields

    configs = _registered_configs()
    assert {"strategy=dkvb", "strategy=er", "scenario=split_fmnist", "scenario=split53", "addon=fpf"} <= set(configs)
    missing = {}
    for option, cls in configs.items():
        lacking = [f["name"] for f in describe_fields(cls) if not f["help"] and f["name"] not in STRUCTURAL]
        if lacking:
            missing[option] = f"{cls.__module__}.{cls.__name__}: {', '.join(lacking)}"
    assert not missing, "fields without help (clbench.fields.setting(default, 'help', ...)):\n" + "\n".join(
        f"{k}: {v}" for k, v in missing.items())
    assert STRUCTURAL - {"defaults"} <= set(STRUCTURAL_HELP)  # the registration's keys are described by the help


def test_the_description_gives_the_valid_range():
    from strategies.tame import TAMEConfig

    from clbench.fields import describe_fields

    rows = {f["name"]: f for f in describe_fields(TAMEConfig)}
    assert rows["alpha"]["valid"] == "a number in (0, 1]" and rows["alpha"]["help"]
    assert rows["buffer_size"]["valid"] == "an integer >= 0"
