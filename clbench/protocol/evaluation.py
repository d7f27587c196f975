"""Evaluation of one matrix row, in mixed batches that tell the learner nothing.

At step i the protocol scores the test samples of every experience the row evaluates
in ONE seeded shuffle, cut into fixed-size batches that mix experiences (each sample
with its own task id where the scenario shows task ids at test). A batch's size and
content never say which experience it comes from; the one short batch is the last of
the shuffle, aligned to no experience. Per-experience results are computed afterwards
from the predictions. Evaluators (a registry keyed by scenario kind) say which
experiences a row evaluates, what to keep of each batch's scores, and how to turn the
kept values into the row.

Beside the class-incremental accuracy, single-label class-incremental and task-agnostic
rows carry the within-task accuracy (``row.extra["within_task"]``): a prediction counts
when the predicted class has the label's position within its own experience, whichever
experience that class belongs to. It is what TAME's official code reports as "Total
accuracy" (its selector picks an expert, and that expert's within-task answer is compared
with the sample's within-task label, right expert or not); computed from the scores alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset

from clbench.api.data import gather
from clbench.api.scenario import Scenario
from clbench.registry import Registry
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, TASK_INCREMENTAL, Prediction

Predict = Callable[[torch.Tensor, Optional[torch.Tensor]], object]


@dataclass
class RowResult:
    """Row i of the accuracy matrix, plus the accuracy on the union of seen test sets."""

    accuracy: list[float]
    union_accuracy: Optional[float]  # None for row 0
    extra: dict = field(default_factory=dict)


@dataclass
class Scored:
    """What an evaluation pass kept, in the unshuffled order of the evaluated samples:
    ``experience[k]`` and ``row[k]`` locate sample k; ``kept``: the evaluator's value per
    sample; ``route``: the route the learner chose per sample (None if it gave none)."""

    experience: torch.Tensor
    row: torch.Tensor
    kept: Optional[torch.Tensor]
    labels: Optional[torch.Tensor]
    route: Optional[torch.Tensor] = None
    within: Optional[torch.Tensor] = None  # per sample: the within-task answer is right (Evaluator.within_task)


EVALUATORS: Registry["Evaluator"] = Registry("evaluator")


def seen_experiences(scenario: Scenario, step: int) -> list[int]:
    """Distinct experiences trained in steps 1..step, in order of first visit."""
    out: list[int] = []
    for e in scenario.steps[:step]:
        if e not in out:
            out.append(e)
    return out


def seen_classes(scenario: Scenario, step: int) -> list[int]:
    """Classes introduced by the experiences of steps 1..step."""
    return sorted({c for e in seen_experiences(scenario, step) for c in scenario.experiences[e].classes})


class Evaluator:
    """Single-label families. PROTOCOL.md: class-incremental (and task-agnostic) argmax
    over the classes seen by ``step``, so an experience not yet trained scores 0 by
    construction and is not run (nor is anything in row 0); task-incremental argmax over
    each sample's own experience's classes, with its task id."""

    def evaluated(self, scenario: Scenario, step: int) -> list[int]:
        if scenario.visibility.task_id_test:
            return list(range(len(scenario.experiences)))
        return seen_experiences(scenario, step)

    def reduce(self, scores: torch.Tensor, experience: torch.Tensor, labels: torch.Tensor, scenario: Scenario,
               step: int) -> torch.Tensor:
        """Per sample: 1 if the masked argmax is its label."""
        pred = self.predicted(scores, experience, scenario, step)
        return (pred.cpu() == labels.cpu()).to(torch.uint8)

    def within_task(self, scores: torch.Tensor, experience: torch.Tensor, labels: torch.Tensor, scenario: Scenario,
                    step: int) -> Optional[torch.Tensor]:
        """Per sample (class-incremental and task-agnostic rows; else None): 1 if the masked
        argmax has the label's position within its own experience's classes, whatever
        experience it is in (TAME's official "Total accuracy", module docstring)."""
        if scenario.kind not in (CLASS_INCREMENTAL, TASK_AGNOSTIC):
            return None
        position = torch.full((scenario.num_classes,), -1, dtype=torch.long)
        for exp in scenario.experiences:
            position[list(exp.classes)] = torch.arange(len(exp.classes))
        pred = self.predicted(scores, experience, scenario, step).cpu()
        return (position[pred] == position[labels.cpu()]).to(torch.uint8)

    def predicted(self, scores: torch.Tensor, experience: torch.Tensor, scenario: Scenario, step: int) -> torch.Tensor:
        """The argmax over the classes a sample may be given (PROTOCOL.md)."""
        device = scores.device
        if scenario.visibility.task_id_test:
            allowed = torch.zeros(len(scenario.experiences), scenario.num_classes, dtype=torch.bool)
            for j, exp in enumerate(scenario.experiences):
                allowed[j, list(exp.classes)] = True
            mask = allowed[experience].to(device)
        else:
            mask = torch.zeros(scenario.num_classes, dtype=torch.bool)
            mask[seen_classes(scenario, step)] = True
            mask = mask.to(device).expand_as(scores)
        return scores.float().masked_fill(~mask, float("-inf")).argmax(dim=1)

    def row(self, scenario: Scenario, step: int, scored: Scored, test_sets: list[Dataset]) -> RowResult:
        T = len(scenario.experiences)
        correct, total = [0] * T, [len(d) for d in test_sets]
        if scored.kept is not None:
            hits = torch.bincount(scored.experience, weights=scored.kept.double(), minlength=T)
            evaluated = set(scored.experience.unique().tolist())
            correct = [int(hits[j]) if j in evaluated else 0 for j in range(T)]
        accuracy = [c / n if n else 0.0 for c, n in zip(correct, total)]
        seen = seen_experiences(scenario, step)
        union = sum(correct[j] for j in seen) / max(1, sum(total[j] for j in seen)) if step > 0 else None
        extra: dict = {"correct": correct, "total": total}
        if scored.within is not None:
            hits = torch.bincount(scored.experience, weights=scored.within.double(), minlength=T)
            right = [int(hits[j]) for j in range(T)]
            extra["within_task"] = {
                "accuracy": [r / n if n and j in seen else None for j, (r, n) in enumerate(zip(right, total))],
                "union": sum(right[j] for j in seen) / max(1, sum(total[j] for j in seen)),
                "mean": sum(right[j] / total[j] for j in seen if total[j]) / max(1, len(seen)),
            }
        return RowResult(accuracy, union, extra)


def unpack(out: object) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Scores and per-sample routes of what ``predict`` returned."""
    if isinstance(out, Prediction):
        return out.scores, out.route
    if isinstance(out, torch.Tensor):
        return out, None
    raise TypeError(f"predict must return a tensor of scores or a clbench.types.Prediction, got {type(out).__name__}")


@torch.inference_mode()
def score_mixed(predict: Predict, evaluator: Evaluator, scenario: Scenario, step: int, test_sets: list[Dataset], *,
                device: torch.device, batch_size: int, generator: torch.Generator,
                on_batch: Optional[Callable[[int], None]] = None) -> Scored:
    """Score every sample of the experiences row ``step`` evaluates, in seeded shuffled
    batches of ``batch_size`` that mix experiences (module docstring). Runs under
    ``torch.inference_mode`` (a forward pass: no autograd bookkeeping, no version
    counters); ``predict`` must not need gradients (``before_eval`` is where a method
    trains anything for evaluation)."""
    evaluated = evaluator.evaluated(scenario, step)
    sizes = [len(test_sets[j]) for j in evaluated]
    experience = torch.cat([torch.full((n,), j, dtype=torch.long) for j, n in zip(evaluated, sizes)]) if sizes else \
        torch.zeros(0, dtype=torch.long)
    row = torch.cat([torch.arange(n) for n in sizes]) if sizes else torch.zeros(0, dtype=torch.long)
    N = len(experience)
    if N == 0:
        return Scored(experience, row, None, None)
    task_ids = torch.tensor([e.task_id for e in scenario.experiences], dtype=torch.long)
    order = torch.randperm(N, generator=generator)
    kept: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    routes: Optional[torch.Tensor] = None
    within: Optional[torch.Tensor] = None
    for start in range(0, N, batch_size):
        at = order[start:start + batch_size]
        tensors = gather(test_sets, experience[at], row[at])
        x = tensors[0].to(device, non_blocking=True)
        task = task_ids[experience[at]].to(device) if scenario.visibility.task_id_test else None
        scores, route = unpack(predict(x, task))
        if bool((torch.isnan(scores) | torch.isposinf(scores)).any()):  # one host sync; -inf: a masked class
            raise NonFiniteError(f"non-finite model outputs (NaN or +inf) when evaluating row {step}")
        value = evaluator.reduce(scores, experience[at], tensors[1], scenario, step)
        if kept is None:
            kept = torch.empty((N, *value.shape[1:]), dtype=value.dtype)
            labels = torch.empty((N, *tensors[1].shape[1:]), dtype=tensors[1].dtype)
        kept[at] = value.cpu()
        labels[at] = tensors[1]
        hit = evaluator.within_task(scores, experience[at], tensors[1], scenario, step)
        if hit is not None:
            if within is None:
                within = torch.zeros(N, dtype=torch.uint8)
            within[at] = hit
        if route is not None:
            if routes is None:
                routes = torch.full((N,), -1, dtype=torch.long)
            routes[at] = route.detach().long().cpu()
        if on_batch is not None:
            on_batch(len(at))
    return Scored(experience, row, kept, labels, routes, within)


def evaluate_row(predict: Predict, scenario: Scenario, step: int, test_sets: list[Dataset], *, device: torch.device,
                 batch_size: int, generator: Optional[torch.Generator] = None,
                 evaluator: Optional[Evaluator] = None) -> RowResult:
    """Row ``step`` of ``scenario``'s matrix for the model behind ``predict`` (mixed batches)."""
    evaluator = evaluator or EVALUATORS.get(scenario.kind)
    generator = generator or torch.Generator().manual_seed(step)
    scored = score_mixed(predict, evaluator, scenario, step, test_sets, device=device, batch_size=batch_size,
                         generator=generator)
    return evaluator.row(scenario, step, scored, test_sets)


def evaluate_single_label(predict: Predict, scenario: Scenario, step: int, test_sets: list[Dataset], *,
                          device: torch.device, batch_size: int) -> RowResult:
    """Row ``step`` of a single-label scenario's matrix (mixed batches)."""
    return evaluate_row(predict, scenario, step, test_sets, device=device, batch_size=batch_size, evaluator=_single_label)


class NonFiniteError(FloatingPointError):
    """A loss or an output that is NaN or infinite: the run stops (status ``failed``)."""


def routing_accuracy(scored: Scored, route_counts: dict[int, dict[int, int]]) -> Optional[dict]:
    """Routing accuracy of a row: each experience maps to the route it trained with most
    (``route_counts[experience][route]`` = training samples); a test sample is routed
    right if its predicted route is its experience's. None without routes."""
    if scored.route is None or not route_counts:
        return None
    mapped = {e: max(c.items(), key=lambda kv: (kv[1], -kv[0]))[0] for e, c in route_counts.items() if c}
    per, right_all, n_all = {}, 0, 0
    for e in scored.experience.unique().tolist():
        if e not in mapped:
            continue
        at = scored.experience == e
        right = int((scored.route[at] == mapped[e]).sum())
        per[int(e)] = right / int(at.sum())
        right_all += right
        n_all += int(at.sum())
    if not n_all:
        return None
    return {"accuracy": right_all / n_all, "per_experience": per, "route_of_experience": mapped}


_single_label = Evaluator()
for _kind in (CLASS_INCREMENTAL, TASK_INCREMENTAL, TASK_AGNOSTIC):
    EVALUATORS.register(_kind, _single_label)
