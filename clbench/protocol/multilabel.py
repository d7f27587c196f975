"""Multi-label class-incremental evaluation (PROTOCOL.md, "Multi-label"): mAP per
experience on the joint test set of seen classes, plus CF1 / OF1 at a sigmoid threshold.

Generic: it knows no dataset. It relies on one convention for ``Experience.test`` of a
multi-label scenario (``scenarios/multilabel.py`` builds it so):

  the test set of experience j holds the test images whose FIRST class in stream order
  belongs to j (at least one class of j, none of experiences 1..j-1), each with its
  full multi-hot label over all classes.

The test sets are then disjoint, and the joint test set at step i (images with at least
one class seen by step i) is exactly the concatenation of test sets 1..i: no
de-duplication and no image ids are needed, so the same code works on raw images and on
features a frozen encoder computed once.

Matrix entries: R[i][j] = mAP over experience j's classes on the joint test set of step
i, labels restricted to the classes seen by i; R[i][j] = 0.0 for j > i: those classes
are not seen, so they are not evaluated (FWT is null for the family). Row 0 (before
training) sees no class, so, as in the class-incremental evaluator, it is all 0.0 and
nothing is run.

AP is non-interpolated average precision (torchmetrics' ``binary_average_precision``,
equal to scikit-learn's; not VOC's 11-point AP), computed on logits so that saturated
sigmoids cannot create ties. A class with no positive in the evaluated images is
skipped and counted, never scored: torchmetrics 1.9 scores such a class 0 (with a
warning) and its ``macro`` average includes that 0, so we never use it.
CF1 = mean over scored classes of per-class F1 (F1 = 0 where nothing is right); OF1 =
micro F1 over all seen classes; both from ``sigmoid(logits) > threshold``, threshold
``scenario.description["threshold"]`` (default 0.8, KRT's convention). KRT's code scores a
class without positives as F1 0; at the last step of VOC / COCO every class has test
positives, so both conventions agree there.
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch
from torch.utils.data import Dataset

from clbench.api.scenario import Scenario
from clbench.protocol.evaluation import EVALUATORS, Evaluator, RowResult, Scored, seen_classes, seen_experiences
from clbench.types import MULTILABEL

DEFAULT_THRESHOLD = 0.8


def average_precisions(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[int]) -> dict[int, Optional[float]]:
    """AP of each class in ``classes`` (columns of ``logits``/``labels``); None where the
    class has no positive among these rows (skipped, not scored as 0)."""
    from torchmetrics.functional.classification import binary_average_precision

    out: dict[int, Optional[float]] = {}
    positives = labels.bool()
    for c in classes:
        target = positives[:, c]
        if not bool(target.any()):
            out[c] = None
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[c] = float(binary_average_precision(logits[:, c].float(), target.long()))
    return out


def mean_ap(ap: dict[int, Optional[float]], classes: Sequence[int]) -> Optional[float]:
    """Mean AP over the scored classes among ``classes``; None if none is scored."""
    scored = [ap[c] for c in classes if ap.get(c) is not None]
    return sum(scored) / len(scored) if scored else None


def f1_scores(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[int], threshold: float) -> dict[str, Optional[float]]:
    """CP, CR, CF1 (means over the classes with a positive) and OP, OR, OF1 (micro, over
    all ``classes``) of the predictions ``sigmoid(logits) > threshold``."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"multi-label threshold must be in (0, 1), got {threshold}")
    cols = torch.as_tensor(list(classes), dtype=torch.long)
    pred = torch.sigmoid(logits[:, cols].float()) > threshold
    truth = labels[:, cols].bool()
    tp = (pred & truth).sum(0).double()
    fp = (pred & ~truth).sum(0).double()
    fn = (~pred & truth).sum(0).double()

    def ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(b > 0, a / b.clamp_min(1), torch.zeros_like(a))

    p_c, r_c = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f_c = ratio(2 * tp, 2 * tp + fp + fn)
    scored = truth.any(0)
    if not bool(scored.any()):
        cp = cr = cf1 = None
    else:
        cp, cr, cf1 = (float(v[scored].mean()) for v in (p_c, r_c, f_c))
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    op, orec = float(ratio(TP, TP + FP)), float(ratio(TP, TP + FN))
    of1 = float(ratio(2 * TP, 2 * TP + FP + FN))
    return {"CP": cp, "CR": cr, "CF1": cf1, "OP": op, "OR": orec, "OF1": of1}


def threshold_of(scenario: Scenario) -> float:
    return float(scenario.description.get("threshold", DEFAULT_THRESHOLD))


class MultiLabelEvaluator(Evaluator):
    """Row ``step`` of a multi-label scenario (module docstring): the joint test set of
    the seen experiences, scored in mixed batches; ``predict`` returns logits."""

    def evaluated(self, scenario: Scenario, step: int) -> list[int]:
        return seen_experiences(scenario, step)

    def reduce(self, scores: torch.Tensor, experience: torch.Tensor, labels: torch.Tensor, scenario: Scenario,
               step: int) -> torch.Tensor:
        return scores.detach().float().cpu()

    def row(self, scenario: Scenario, step: int, scored: Scored, test_sets: list[Dataset]) -> RowResult:
        T = len(scenario.experiences)
        threshold = threshold_of(scenario)
        if step == 0:  # nothing seen: an empty joint test set
            none = dict.fromkeys(("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"))
            extra = {**none, "AP": [None] * scenario.num_classes, "skipped": 0, "skipped_classes": [], "images": 0}
            return RowResult([0.0] * T, None, {**extra, "threshold": threshold})
        classes = seen_classes(scenario, step)
        if scored.kept is None:
            logits = torch.zeros(0, scenario.num_classes)
            labels = torch.zeros(0, scenario.num_classes, dtype=torch.bool)
        else:
            logits, labels = scored.kept, scored.labels.bool()
        ap = average_precisions(logits, labels, classes)
        seen = set(seen_experiences(scenario, step))
        accuracy = []
        for j, exp in enumerate(scenario.experiences):
            value = mean_ap(ap, exp.classes) if j in seen else None
            accuracy.append(0.0 if value is None else value)
        overall = mean_ap(ap, classes)
        skipped = [c for c in classes if ap[c] is None]
        extra = {
            "mAP": overall,
            "AP": [ap.get(c) for c in range(scenario.num_classes)],
            "skipped": len(skipped),
            "skipped_classes": skipped,
            "images": int(len(labels)),
            "threshold": threshold,
            **f1_scores(logits, labels, classes, threshold),
        }
        return RowResult(accuracy, 0.0 if overall is None else overall, extra)

    @staticmethod
    def extra_metrics(row_extras: list[dict]) -> dict[str, Optional[float]]:
        return extra_metrics(row_extras)


def evaluate_multilabel(predict, scenario: Scenario, step: int, test_sets: list[Dataset], *, device: torch.device,
                        batch_size: int) -> RowResult:
    """Row ``step`` of a multi-label scenario's matrix (mixed batches; see ``clbench.protocol.evaluation``)."""
    from clbench.protocol.evaluation import evaluate_row

    return evaluate_row(predict, scenario, step, test_sets, device=device, batch_size=batch_size,
                        evaluator=EVALUATORS.get(MULTILABEL))


def extra_metrics(row_extras: list[dict]) -> dict[str, Optional[float]]:
    """Record keys of the family from the extras of rows 1..done: avg_mAP (mean over
    steps), last_mAP, and CF1 / OF1 of the last step."""
    if not row_extras:
        return {"avg_mAP": None, "last_mAP": None, "CF1": None, "OF1": None}
    maps = [r["mAP"] for r in row_extras if r.get("mAP") is not None]
    last = row_extras[-1]
    return {
        "avg_mAP": sum(maps) / len(maps) if maps else None,
        "last_mAP": last.get("mAP"),
        "CF1": last.get("CF1"),
        "OF1": last.get("OF1"),
    }


EVALUATORS.register(MULTILABEL, MultiLabelEvaluator())
