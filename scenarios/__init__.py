"""clbench's scenarios: stream builders by family over data sources.

Importing this package registers every named scenario (it is the ``clbench.plugins``
entry point); adding a scenario = its builder or preset here and one import line.
"""
from scenarios import avalanche_benchmarks, cifar_digits, class_incremental, split53  # noqa: F401  (registers their scenarios)
