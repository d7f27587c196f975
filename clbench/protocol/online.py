"""Evaluation inside experiences (``eval_every=N``; PROTOCOL.md, "Online evaluation"):
every N optimisation steps of the live learner, an evaluation copy (never the live
learner) is scored on the test sets of the experiences seen so far, under a forked
random state, in its own phase ``eval_online`` (not training compute). The curve goes to
``record.extra["online"]``; ``clbench.results.metrics.online_metrics`` summarises it
(online_ACC, AUC_ACC, min_ACC) and the record says the seconds it cost."""
from __future__ import annotations

import time
from typing import Any

import torch

from clbench import rng
from clbench.protocol.evaluation import score_mixed, seen_experiences
from clbench.protocol.snapshot import evaluation_copy

#: offset of the online points' evaluation seeds from the rows' (they never coincide)
_SEED_OFFSET = 1_000_000


class OnlineEvaluator:
    """Scores an evaluation copy every ``every`` steps while experience ``step`` trains."""

    def __init__(self, session: Any, every: int) -> None:
        self.session, self.every = session, every
        self.row = 0  # the matrix row the current training leads to (0: not training)
        self.data = session.record.extra.setdefault(
            "online", {"every": every, "steps": [], "experience": [], "acc": [], "end_steps": [], "seconds": 0.0})

    def after_step(self, steps: int) -> None:
        """Called after each optimisation step (``steps``: the run's count so far)."""
        if self.row > 0 and steps % self.every == 0:
            self.evaluate(steps)

    def evaluate(self, steps: int) -> None:
        """One point of the curve at the run's step ``steps``."""
        s = self.session
        sc, started = s.scenario, time.perf_counter()
        seed = rng.eval_seed(s.settings.seed, _SEED_OFFSET + steps)
        with rng.forked(seed, s.device), s.clock.phase("eval_online", sync=True):
            copy_, _ = evaluation_copy(s.strategy)
            copy_.before_eval()
            copy_.eval()
            encoder = copy_.frozen_encoder()
            test_sets = [s.encoded("test", j, d, encoder) for j, d in enumerate(s.test_sets)]
            scored = score_mixed(copy_.predict, s.evaluator, sc, self.row, test_sets, device=s.device,
                                 batch_size=s.settings.eval_batch_size, generator=torch.Generator().manual_seed(seed))
            row = s.evaluator.row(sc, self.row, scored, test_sets)
            del copy_
        self.data["steps"].append(steps)
        self.data["experience"].append(self.row)
        seen = set(seen_experiences(sc, self.row))  # the experiences trained on so far, the current one included
        self.data["acc"].append([a if j in seen else None for j, a in enumerate(row.accuracy)])
        self.data["seconds"] = round(self.data["seconds"] + time.perf_counter() - started, 6)

    def end_experience(self, steps: int) -> None:
        """The current experience's training ended at the run's step ``steps``."""
        self.data["end_steps"].append(steps)
