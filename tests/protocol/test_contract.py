"""The strategy contract (clbench.protocol.contract, shipped as ``clbench check``) on every
registered strategy, plugins included, on a tiny synthetic stream of each family it
supports: it trains with a finite loss; the same seed gives the same matrix; its
``state_dict`` survives ``torch.save`` / ``torch.load(weights_only=True)`` into a freshly
built strategy that predicts exactly the same; a run resumed after experience 1 ends with
the same matrix. And the checks on a typical user's first LwF, whose teacher (a submodule made
after experience 1) is not described by ``structure()``: the round trip and the resume fail,
naming the teacher; with ``structure()`` the same strategy passes. (Every strategy's config
composing into its config class: tests/config/test_store.py.)"""
from __future__ import annotations

import pytest

from clbench.api.strategy import STRATEGIES
from clbench.protocol.contract import check_resume, check_state, check_trains, kinds_of

from probes import TeacherLwF, TeacherLwFWithStructure  # noqa: F401  (registered as _lwf_teacher, _lwf_teacher_structured)

CASES = [(name, kind) for name in STRATEGIES.names() for kind in kinds_of(STRATEGIES.get(name))]


def _assert_ok(findings) -> None:
    bad = [f for f in findings if not f.ok]
    assert not bad, "; ".join(f"{f.check} ({f.kind}): {f.detail}" for f in bad)


@pytest.mark.parametrize("name, kind", CASES)
def test_trains_with_finite_loss_and_completes(name, kind, tmp_path):
    _assert_ok([check_trains(name, kind, tmp_path)])


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_same_seed_same_matrix_state_round_trip_and_resume(name, tmp_path):
    kind = kinds_of(STRATEGIES.get(name))[0]
    _assert_ok(check_state(name, kind, tmp_path) + [check_resume(name, kind, tmp_path)])


def test_a_teacher_grown_mid_stream_without_structure_fails_the_round_trip_and_the_resume(tmp_path):
    findings = {f.check: f for f in check_state("_lwf_teacher", "class_incremental", tmp_path)}
    assert findings["same seed"].ok
    trip = findings["state round trip"]
    assert not trip.ok and "teacher" in trip.detail and "structure()" in trip.detail, trip.detail
    resume = check_resume("_lwf_teacher", "class_incremental", tmp_path)
    assert not resume.ok and "teacher" in resume.detail


def test_with_structure_the_same_strategy_passes(tmp_path):
    findings = check_state("_lwf_teacher_structured", "class_incremental", tmp_path)
    findings.append(check_resume("_lwf_teacher_structured", "class_incremental", tmp_path))
    assert all(f.ok for f in findings), [(f.check, f.detail) for f in findings if not f.ok]
