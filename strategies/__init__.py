"""clbench's strategies, one module per method. Importing this package registers them
(it is the ``clbench.plugins`` entry point); adding a method = its module + one line."""
from strategies import avalanche_baselines, baselines, clr, dkvb, kfpf, multilane, probes, tame  # noqa: F401
