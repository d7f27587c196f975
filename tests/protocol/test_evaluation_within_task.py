"""The within-task accuracy beside the class-incremental one (clbench/protocol/evaluation.py):
TAME's official "Total accuracy", where the predicted class counts when it has the label's
position within its experience, whichever experience it belongs to."""
from __future__ import annotations

import pytest
import torch

from clbench.api.data import TensorData
from clbench.api.scenario import Scenario
from clbench.protocol.evaluation import Evaluator, evaluate_row
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, TASK_INCREMENTAL, Experience, Prediction


def scenario(kind: str) -> Scenario:
    """Two experiences, classes (3, 1) and (0, 2) (the order is the experience's, not sorted);
    5 test samples per class; pixel 0 holds the label."""
    exps = []
    for i, classes in enumerate([(3, 1), (0, 2)]):
        y = torch.tensor(classes).repeat_interleave(5)
        x = torch.zeros(len(y), 1, 2, 2)
        x[:, 0, 0, 0] = y.float()
        exps.append(Experience(i, TensorData(x, y), TensorData(x.clone(), y.clone()), classes, i))
    return Scenario("within", kind, exps, 4, (1, 2, 2), [3, 1, 0, 2])


#: the class in the same position of the other experience: 3 <-> 0, 1 <-> 2
SWAP = torch.tensor([3, 2, 1, 0])


def predict_wrong_task(x: torch.Tensor, task=None) -> Prediction:
    """Answers every sample with the class at its label's position in the OTHER experience
    (a selector that always picks the wrong expert, whose within-task answer is right)."""
    y = x[:, 0, 0, 0].long()
    scores = torch.nn.functional.one_hot(SWAP[y], 4).float()
    return Prediction(scores, route=torch.zeros(len(x), dtype=torch.long))


@pytest.mark.parametrize("kind", [CLASS_INCREMENTAL, TASK_AGNOSTIC])
def test_a_right_within_task_answer_from_the_wrong_task_counts_only_within_task(kind):
    sc = scenario(kind)
    test_sets = [e.test for e in sc.experiences]
    row = evaluate_row(predict_wrong_task, sc, 2, test_sets, device=torch.device("cpu"), batch_size=3)
    assert row.accuracy == [0.0, 0.0] and row.union_accuracy == 0.0
    within = row.extra["within_task"]
    assert within["accuracy"] == [1.0, 1.0] and within["union"] == 1.0 and within["mean"] == 1.0


def test_within_task_accuracy_equals_accuracy_for_the_right_task_and_counts_only_seen_experiences():
    sc = scenario(CLASS_INCREMENTAL)
    test_sets = [e.test for e in sc.experiences]

    def half_right(x: torch.Tensor, task=None) -> torch.Tensor:
        """Right on classes 3 and 0; on 1 it answers 3 (same task, wrong position); on 2, 1
        (other task, same position as 2)."""
        y = x[:, 0, 0, 0].long()
        answer = torch.tensor([0, 3, 1, 3])[y]
        return torch.nn.functional.one_hot(answer, 4).float()

    row = evaluate_row(half_right, sc, 2, test_sets, device=torch.device("cpu"), batch_size=4)
    assert row.accuracy == [0.5, 0.5]
    assert row.extra["within_task"]["accuracy"] == [0.5, 1.0]  # 2 -> 1: the wrong class, the right position
    assert row.extra["within_task"]["union"] == 0.75
    first = evaluate_row(half_right, sc, 1, test_sets, device=torch.device("cpu"), batch_size=4)
    assert first.extra["within_task"]["accuracy"] == [0.5, None]  # experience 2 is not evaluated at step 1


def test_task_incremental_rows_carry_no_within_task_accuracy():
    sc = scenario(TASK_INCREMENTAL)
    row = evaluate_row(predict_wrong_task, sc, 2, [e.test for e in sc.experiences], device=torch.device("cpu"),
                       batch_size=4)
    assert "within_task" not in row.extra
    assert Evaluator().within_task(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                                   sc, 2) is None
