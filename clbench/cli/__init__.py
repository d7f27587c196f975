"""The ``clbench`` command line (``main``), its runner (``launch``) and sweeps (``sweep``)."""
from clbench.cli.main import main

__all__ = ["main"]
