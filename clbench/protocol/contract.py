"""The strategy contract, as checks a plugin author runs (``clbench check strategy=NAME``)
and the test suite runs on every registered strategy.

On a tiny synthetic stream of each family the strategy supports (``clbench.api.synthetic``):

- ``trains``: the run completes and every point of the loss curve is finite;
- ``same seed``: a second run with the same seed gives the same matrix;
- ``state round trip``: after the stream (modules grown mid-stream included), its
  ``state_dict`` survives ``torch.save`` / ``torch.load(weights_only=True)`` into a
  freshly built strategy (another seed), which then predicts exactly the same;
- ``resume``: a run resumed from its checkpoint after experience 1 ends with the same
  matrix as the uninterrupted run (for strategies that declare ``resumable``).

Each check reports a :class:`Finding`; a failure says what to fix.
"""
from __future__ import annotations

import dataclasses
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from clbench.api.strategy import STRATEGIES, Strategy
from clbench.api.synthetic import image_blob_scenario, multilabel_blob_scenario
from clbench.models.backbones import BACKBONE_PRESETS, BackboneConfig
from clbench.protocol.compat import IncompatibleError, check_compatible
from clbench.protocol.memory_format import learner_memory_format, to_memory_format
from clbench.protocol.runner import resumable, run
from clbench.protocol.snapshot import evaluation_copy
from clbench.settings import RunSettings
from clbench.types import CLASS_INCREMENTAL, KINDS, MULTILABEL, TASK_AGNOSTIC

#: small settings for any strategy that has these fields: the contract is about
#: mechanics, not accuracy
SMALL = {
    "epochs": 1, "batch_size": 8, "buffer_size": 24, "replay_batch_size": 8, "pretrain_epochs": 1,
    "key_init_epochs": 1, "key_init_limit": 64, "num_codebooks": 4, "pairs_per_codebook": 16, "key_dim": 4,
    "encoder": "identity", "patience": 1, "mem_size": 24, "patterns_per_exp": 4, "iters": 2, "fpf_iters": 2, "k": 2,
    "selector_epochs": 2, "selector_finetune_epochs": 1, "expert_prune_epochs": 1, "projection_dim": 64,
}


@dataclass
class Finding:
    """One check on one scenario family: passed or not, and why."""

    check: str
    kind: str
    ok: bool
    detail: str = ""


def scenario_of(kind: str) -> Any:
    """The synthetic stream of a family (3 experiences of 2 classes, 8x8 images)."""
    if kind == MULTILABEL:
        return multilabel_blob_scenario(n_train=16, n_test=8)
    if kind == TASK_AGNOSTIC:
        from clbench.api.synthetic import as_stream

        return as_stream(image_blob_scenario(CLASS_INCREMENTAL))
    return image_blob_scenario(kind)


def kinds_of(cls: type) -> list[str]:
    """The families ``cls`` runs on (supported, and nothing it needs hidden)."""
    out = []
    for kind in KINDS:
        try:
            check_compatible(cls, kind)
        except IncompatibleError:
            continue
        out.append(kind)
    return out


def build(name: str, scenario: Any, seed: int = 0, overrides: Optional[dict] = None) -> Strategy:
    """Strategy ``name`` for ``scenario`` with :data:`SMALL` settings (then ``overrides``)
    and a narrow random-init backbone, built on a seeded global RNG."""
    cls = STRATEGIES.get(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    settings = {**{k: v for k, v in SMALL.items() if k in fields}, **(overrides or {})}
    config = cls.config_class(name=name, **settings)
    info = scenario.info_for(0.1)
    preferred = cls.preferred_backbone(info)
    backbone = dataclasses.replace(BACKBONE_PRESETS[preferred]) if preferred else BackboneConfig(name="cnn28")
    backbone.weights = "none" if backbone.weights in ("hub", "IMAGENET1K_V1", "IMAGENET1K_V2") else backbone.weights
    backbone.width = 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config, info, backbone, seed=seed)


def settings_for(results_dir: Path, seed: int = 0, **extra: Any) -> RunSettings:
    return RunSettings(seed=seed, results_dir=str(results_dir), progress=False, device="cpu", eval_batch_size=16,
                       log_every=2, **extra)


def run_once(name: str, kind: str, results_dir: Path, seed: int = 0, overrides: Optional[dict] = None,
             **settings: Any) -> tuple[Any, Strategy, Any]:
    """One protocol run of ``name`` on the synthetic stream of ``kind``: (scenario, strategy, record)."""
    scenario = scenario_of(kind)
    strategy = build(name, scenario, seed, overrides)
    record, _ = run(scenario, strategy, settings=settings_for(results_dir, seed, **settings))
    return scenario, strategy, record


def _predictions(strategy: Strategy, scenario: Any) -> torch.Tensor:
    x = torch.cat([e.test.x for e in scenario.experiences])[:20]
    task = torch.zeros(len(x), dtype=torch.long) if scenario.visibility.task_id_test else None
    copy_, _ = evaluation_copy(strategy)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        copy_.before_eval()
        copy_.eval()
        with torch.no_grad():
            out = copy_.predict(x, task)
    return out.scores if hasattr(out, "scores") else out


def check_trains(name: str, kind: str, workdir: Path, overrides: Optional[dict] = None) -> Finding:
    try:
        _, _, record = run_once(name, kind, workdir / f"trains-{kind}", overrides=overrides)
    except Exception as err:  # noqa: BLE001 - the finding says what broke
        return Finding("trains", kind, False, f"the run failed: {type(err).__name__}: {err}")
    curve = record.extra["loss_curve"]
    if not curve or any(v is None or v != v for _, v in curve):
        return Finding("trains", kind, False, f"no loss curve, or a non-finite point in it: {curve[:5]}")
    return Finding("trains", kind, True, f"{len(curve)} loss points, final ACC {record.metrics.get('ACC')}")


def check_state(name: str, kind: str, workdir: Path, overrides: Optional[dict] = None) -> list[Finding]:
    """``same seed`` and ``state round trip`` (the latter after the whole stream)."""
    found = []
    scenario, strategy, first = run_once(name, kind, workdir / f"state-{kind}-a", overrides=overrides)
    _, _, second = run_once(name, kind, workdir / f"state-{kind}-b", overrides=overrides)
    same = first.matrix == second.matrix
    found.append(Finding("same seed", kind, same, "" if same else
                         "two runs with seed 0 gave different matrices: some randomness does not come from the "
                         "strategy's generator (self.generator) or the seeded global RNG"))
    buffer = io.BytesIO()
    try:
        torch.save(strategy.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
    except Exception as err:  # noqa: BLE001
        found.append(Finding("state round trip", kind, False, f"state_dict does not save and load with "
                             f"weights_only=True ({type(err).__name__}: {err}); keep tensors and plain data only"))
        return found
    fresh = build(name, scenario, seed=123, overrides=overrides)  # another seed: everything must come from the state
    try:
        fresh.load_state_dict(state)
    except Exception as err:  # noqa: BLE001
        grown = "" if strategy.structure() is not None else (
            "; modules grown during the stream (e.g. a teacher or a head made after experience 1) must be "
            "described by structure() and rebuilt by build_structure() before the state loads")
        found.append(Finding("state round trip", kind, False,
                             f"a freshly built strategy cannot load the state: {_first_line(err)}{grown}"))
        return found
    memory_format = learner_memory_format(RunSettings(), fresh)  # as the run had it: last-bit numerics differ
    if memory_format is not None:
        to_memory_format(fresh, memory_format)
    same = torch.equal(_predictions(strategy, scenario), _predictions(fresh, scenario))
    found.append(Finding("state round trip", kind, same, "" if same else
                         "the reloaded strategy predicts differently: some training state is not in state_dict "
                         "(list plain attributes in state_attrs; optimisers, buffers and generators are found)"))
    return found


def check_resume(name: str, kind: str, workdir: Path, overrides: Optional[dict] = None) -> Finding:
    """Resume from the checkpoint after experience 1; the final matrix must not change."""
    if not getattr(STRATEGIES.get(name), "resumable", True):
        return Finding("resume", kind, True, "skipped: the strategy declares resumable = False")
    where = workdir / f"resume-{kind}"
    scenario, strategy, full = run_once(name, kind, where, overrides=overrides, keep_checkpoints=True)
    if not resumable(strategy, None):
        return Finding("resume", kind, True, "skipped: not resumable")
    checkpoint = where / "checkpoints" / full.run_id / "step-0001.pt"
    if not checkpoint.is_file():
        return Finding("resume", kind, False, f"no checkpoint after experience 1 at {checkpoint}")
    again = build(name, scenario_of(kind), 0, overrides)
    try:
        record, _ = run(scenario_of(kind), again, settings=settings_for(where, keep_checkpoints=True),
                        resume=checkpoint)
    except Exception as err:  # noqa: BLE001
        return Finding("resume", kind, False, f"resuming from {checkpoint.name} failed: {_first_line(err)}")
    same = record.matrix == full.matrix
    return Finding("resume", kind, same, "" if same else
                   "the run resumed after experience 1 ended with another matrix than the uninterrupted one")


def check_strategy(name: str, *, overrides: Optional[dict] = None, workdir: Optional[Path] = None,
                   kinds: Optional[list[str]] = None) -> list[Finding]:
    """Every check of the contract for strategy ``name``: ``trains`` on each family it
    supports (or ``kinds``), the others on the first."""
    cls = STRATEGIES.get(name)
    kinds = kinds or kinds_of(cls)
    if not kinds:
        return [Finding("families", "-", False, f"{name} runs on no scenario family (kinds {sorted(cls.kinds)}, "
                                                f"needs {sorted(cls.needs)})")]
    with tempfile.TemporaryDirectory(prefix="clbench-check-") as tmp:
        root = Path(workdir or tmp)
        found = [check_trains(name, kind, root, overrides) for kind in kinds]
        if all(f.ok for f in found):
            found += check_state(name, kinds[0], root, overrides)
            found.append(check_resume(name, kinds[0], root, overrides))
    return found


def _first_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:3])[:400]
