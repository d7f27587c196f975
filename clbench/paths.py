"""Where clbench keeps data and derived files, outside any run's results folder.

- data: ``data_root=``, else ``$CLBENCH_DATA``, else ``~/.cache/clbench/data``;
- cache: ``$CLBENCH_CACHE`` (default ``~/.cache/clbench``; ``off`` disables it) holding
  ``features/`` (frozen-encoder outputs), ``weights/`` (trunks pretrained offline) and
  the config index.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

CACHE_ENV = "CLBENCH_CACHE"
DATA_ENV = "CLBENCH_DATA"
DEFAULT_CACHE_ROOT = "~/.cache/clbench"
OFF = ("off", "0", "false", "no", "none")


def cache_root() -> Optional[Path]:
    """``$CLBENCH_CACHE`` (default ``~/.cache/clbench``); None when it says ``off``."""
    root = os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT
    return None if root.strip().lower() in OFF else Path(root).expanduser()


def weights_cache_dir(configured: Optional[str] = None) -> Path:
    """Where trunks pretrained offline are cached: ``configured`` (a strategy's
    ``cache_dir``), else ``<cache root>/weights``; with the cache off, a folder under the
    temp dir (the weights are still needed for the run)."""
    if configured:
        return Path(configured).expanduser()
    root = cache_root()
    return (root if root is not None else Path(tempfile.gettempdir()) / "clbench") / "weights"


def default_data_root() -> Path:
    """``$CLBENCH_DATA`` or ``~/.cache/clbench/data``: where data lives unless ``data_root=`` says."""
    return Path(os.environ.get(DATA_ENV) or "~/.cache/clbench/data").expanduser()

#: the YAML part of the run config (the primary config, experiments, debug variants, launchers)
CONF_DIR = Path(__file__).resolve().parent / "conf"
