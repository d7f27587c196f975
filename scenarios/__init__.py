"""clbench's scenarios: stream builders by family over data sources.

Importing this package registers every named scenario (it is the ``clbench.plugins``
entry point); adding a scenario = its builder or preset here and one import line.
"""
from scenarios import (  # noqa: F401  (each registers its scenarios)
    auxiliary, avalanche_benchmarks, cifar_digits, class_incremental, multilabel, split53, task_agnostic,
)
