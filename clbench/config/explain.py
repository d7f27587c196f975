"""Hydra's composition errors as one message naming the bad value and the valid choices."""
from __future__ import annotations


def explain_config_error(err: BaseException, overrides: list[str]) -> str:
    """Turn a Hydra composition error into one message naming the bad value and the
    valid choices (config group options, or the keys of the node, or the type)."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if isinstance(err, MissingConfigException):
        import re

        text = str(err).split("Config search path")[0]
        options = [ln.strip() for ln in text.splitlines() if ln.startswith("\t")]
        found = re.search(r"Could not find '([^/']+)/([^']+)'", text)
        if found and options:
            return f"unknown {found.group(1)} {found.group(2)!r}; valid choices: {', '.join(options)}"
        return text.strip()
    cause = err.__cause__ or err
    full_key = getattr(cause, "full_key", None)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and full_key:
        parent, _, key = full_key.rpartition(".")
        valid = _valid_keys(parent, [o for o in overrides if not o.lstrip("+~").startswith(full_key + "=")])
        where = parent or "the run config"
        return f"unknown key {key!r} in {where}; valid keys: {', '.join(valid)}"
    if isinstance(cause, ValidationError) and full_key:
        return f"bad value for {full_key}: {str(cause).splitlines()[0]}"
    return str(err).strip()


def _valid_keys(parent: str, overrides: list[str]) -> list[str]:
    from omegaconf import OmegaConf

    from clbench.config.store import compose

    try:
        node = OmegaConf.select(compose(overrides), parent) if parent else compose(overrides)
        return sorted(k for k in node.keys() if k != "defaults")
    except Exception:  # noqa: BLE001 - best effort: the main message still stands
        return ["(could not list)"]
