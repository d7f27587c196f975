"""Multi-label evaluation (clbench.protocol.multilabel): mAP skips a class without a positive
(torchmetrics pinned), CF1 / OF1 by hand, the extra metrics, rows restricted to the seen
classes with the future zeroed, and the learner given only the current step's known masks."""
import warnings

import numpy as np
import pytest
import torch

from clbench import protocol
from clbench.protocol.evaluation import EVALUATORS
from clbench.protocol.multilabel import average_precisions, evaluate_multilabel, extra_metrics, f1_scores, mean_ap
from clbench.types import MULTILABEL

from probes import Probe
from synthetic import TEST, ids, multi_hot, synthetic_scenario


def logit(p):
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p / (1 - p))


def test_torchmetrics_scores_a_class_without_positives_as_zero_so_we_skip_it():
    """Pins torchmetrics 1.9: no positive -> AP 0 (with a warning) and ``macro`` averages
    that 0 in. Our mean over seen classes must skip such a class instead."""
    from torchmetrics.functional.classification import binary_average_precision, multilabel_average_precision

    scores = torch.tensor([[0.9, 0.2, 0.3], [0.1, 0.8, 0.4], [0.6, 0.7, 0.2]])
    target = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert float(binary_average_precision(scores[:, 2], target[:, 2])) == 0.0
        assert float(multilabel_average_precision(scores, target, 3, average="macro")) == pytest.approx(2 / 3)
    ap = average_precisions(scores, target, [0, 1, 2])
    assert ap[2] is None and mean_ap(ap, [0, 1, 2]) == pytest.approx(1.0)


def test_map_hand_computed_skips_class_without_positive():
    scores = torch.tensor([[0.9, 0.2, 0.5], [0.8, 0.7, 0.1], [0.3, 0.6, 0.2], [0.1, 0.1, 0.9]])
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    ap = average_precisions(scores, labels, [0, 1, 2])
    # class 0: positives ranked 1st and 3rd -> (1 + 2/3) / 2; class 1: its positive ranked 1st
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2) and ap[1] == pytest.approx(1.0) and ap[2] is None
    assert mean_ap(ap, [0, 1, 2]) == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    assert mean_ap(ap, [2]) is None


def test_cf1_of1_hand_computed():
    probs = [[0.9, 0.2, 0.9], [0.85, 0.95, 0.1], [0.3, 0.6, 0.1], [0.1, 0.1, 0.1]]
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    out = f1_scores(logit(probs), labels, [0, 1, 2], threshold=0.8)
    # class 0: tp 1 fp 1 fn 1 -> F1 0.5; class 1: tp 1 -> F1 1; class 2 has no positive: not in CF1,
    # but its false positive counts in OF1: TP 2, FP 2, FN 1 -> 2*2 / (2*2 + 2 + 1)
    assert out["CF1"] == pytest.approx(0.75) and out["CP"] == pytest.approx(0.75) and out["CR"] == pytest.approx(0.75)
    assert out["OF1"] == pytest.approx(4 / 7) and out["OP"] == pytest.approx(0.5) and out["OR"] == pytest.approx(2 / 3)
    assert f1_scores(logit(probs), labels, [0, 1, 2], threshold=0.5)["CF1"] == pytest.approx((0.5 + 2 / 3) / 2)  # class 1 gains a false positive
    with pytest.raises(ValueError, match="threshold"):
        f1_scores(logit(probs), labels, [0], threshold=1.5)


def test_extra_metrics_average_over_steps_and_take_the_last():
    rows = [{"mAP": 0.9, "CF1": 0.5, "OF1": 0.6}, {"mAP": 0.7, "CF1": 0.4, "OF1": 0.3}]
    assert extra_metrics(rows) == pytest.approx({"avg_mAP": 0.8, "last_mAP": 0.7, "CF1": 0.4, "OF1": 0.3})
    assert EVALUATORS.get(MULTILABEL).extra_metrics(rows) == extra_metrics(rows)


def test_evaluator_rows_restrict_to_seen_classes_and_zero_the_future():
    s = synthetic_scenario()
    scores = torch.randn(len(TEST), 6, generator=torch.Generator().manual_seed(1))

    def predict(x, task):
        assert task is None
        return scores[x[:, 0, 0, 0].long() - 100]

    tests = [e.test for e in s.experiences]
    labels = multi_hot(TEST)
    row0 = evaluate_multilabel(lambda x, t: pytest.fail("row 0 sees no class: nothing to run"), s, 0, tests,
                               device=torch.device("cpu"), batch_size=2)
    assert row0.accuracy == [0.0, 0.0, 0.0] and row0.union_accuracy is None and row0.extra["mAP"] is None
    for step in range(1, 4):
        row = evaluate_multilabel(predict, s, step, tests, device=torch.device("cpu"), batch_size=2)
        rows = sorted(i - 100 for e in s.experiences[:step] for i in ids(e.test))
        for j, e in enumerate(s.experiences):
            if j >= step:
                assert row.accuracy[j] == 0.0
                continue
            want = average_precisions(scores[rows], labels[rows], e.classes)
            assert row.accuracy[j] == pytest.approx(mean_ap(want, e.classes) or 0.0)
        seen = sorted(c for e in s.experiences[:step] for c in e.classes)
        want_all = average_precisions(scores[rows], labels[rows], seen)
        assert row.extra["mAP"] == pytest.approx(mean_ap(want_all, seen))
        assert row.extra["skipped"] == sum(want_all[c] is None for c in seen)
        assert row.union_accuracy == pytest.approx(row.extra["mAP"])
        assert row.extra["threshold"] == 0.8 and row.extra["images"] == len(rows)
    # at step 1 classes 0, 1 are seen; class 1 has its only test positive (image 4) in the joint set
    assert row.extra["AP"][1] is not None


def test_protocol_gives_the_learner_only_known_masks_of_the_current_step(tmp_path):
    s = synthetic_scenario()

    class MaskProbe(Probe):
        def observe(self, batch):
            self.calls.append(batch.known.clone())
            return super().observe(batch)

    probe = MaskProbe(info=s.info)
    record, _ = protocol.run(s, probe, settings=protocol.RunSettings(results_dir=str(tmp_path), progress=False,
                                                                     device="cpu", val_fraction=0.0))
    masks = [c for c in probe.calls if isinstance(c, torch.Tensor)]
    assert {tuple(torch.nonzero(m[0]).flatten().tolist()) for m in masks} == {(0, 1), (2, 3), (4, 5)}
    assert len(record.matrix) == 4 and set(record.metrics) >= {"avg_mAP", "last_mAP", "CF1", "OF1"}
    assert record.metrics["avg_mAP"] == pytest.approx(np.mean(record.union_accuracy))
