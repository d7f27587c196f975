"""The evaluation protocol: the only loop over experiences (docs/PROTOCOL.md).

For each experience the learner is trained on what the scenario lets it see, then
every experience's test split is evaluated on a copy of the learner (row i of the
accuracy matrix); a row 0 is evaluated before any training. After each experience the
record is saved (status "running") and a checkpoint written, so a crash loses nothing
already computed. One job per module:

- ``runner``: :func:`run`, from a new record or a checkpoint to the final record;
- ``session``: the loop, encoding, rows (:class:`Session`, :func:`train_experience`);
- ``evaluation`` (and ``multilabel``): mixed-batch scoring and the evaluators by family;
- ``snapshot``: the evaluation copy; ``monitor``: the per-step listener;
- ``phases``: time and FLOPs per phase; ``checkpoints``: experience checkpoints; ``claims``: who runs
  a run (lease, heartbeat), leftovers of killed runs; ``resuming``: which checkpoint a ``resume=`` means;
- ``bookkeeping``: the record's fields; ``signals``: SIGTERM and friends;
- ``compat``: what is refused before any data is read.
"""
from clbench.protocol.compat import IncompatibleError, check_addon_compatible, check_compatible, resolve_device
from clbench.protocol.evaluation import NonFiniteError
from clbench.protocol.runner import run
from clbench.protocol.session import Session, train_experience
from clbench.protocol.signals import Interrupted, SignalGuard
from clbench.protocol.snapshot import evaluation_copy
from clbench.rng import seed_everything
from clbench.settings import RunSettings

__all__ = ["run", "Session", "train_experience", "evaluation_copy", "check_compatible", "check_addon_compatible",
           "resolve_device", "seed_everything", "IncompatibleError", "Interrupted", "SignalGuard", "NonFiniteError",
           "RunSettings"]
