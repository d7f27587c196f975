"""Any registered clbench strategy as an Avalanche strategy (one generic adapter).

:class:`ClbenchTemplate` is a ``SupervisedTemplate`` whose model is the clbench
strategy. Training an experience runs the strategy's own ``begin_experience`` /
``train_experience`` / ``end_experience`` (so each method keeps its own optimiser
handling: a fresh optimiser per task for CLR, one SGD kept across experiences for
DKVB); Avalanche's plugins see the experience-level events and every evaluation event.
Evaluation runs Avalanche's loop on ``strategy.predict`` with the clbench protocol's
masking: classes of experiences not yet trained are masked out (as Avalanche's
``IncrementalClassifier`` does) and, on task-labelled benchmarks, classes outside the
sample's task (as a ``MultiHeadClassifier`` does). Before any training on a
class-incremental benchmark no class is seen, so the output gets one extra "no class"
column that wins (the protocol's row 0 is 0 by construction). So Avalanche's metrics on
this template are the clbench protocol's numbers.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch.nn import CrossEntropyLoss

from avalanche.training.plugins.evaluation import default_evaluator
from avalanche.training.templates import SupervisedTemplate

from clbench.api.data import split_validation
from clbench.api.strategy import STRATEGIES, Strategy
from clbench.api.view import LearnerView
from clbench.avalanche.benchmark import AvalancheData, BenchmarkLayout, read_layout
from clbench.models.backbones import BACKBONE_PRESETS, BackboneConfig
from clbench.models.features import encode
from clbench.protocol import check_compatible, evaluation_copy, train_experience
from clbench.types import TASK_INCREMENTAL, ExperienceInfo, Prediction

#: Avalanche template arguments ``make_strategy`` passes on (the rest configure the strategy).
TEMPLATE_ARGS = ("evaluator", "plugins", "device", "eval_mb_size", "eval_every")
MASK_MARGIN = 1000.0  # masked classes score this far below the batch minimum (Avalanche masks with -1000)


class ClbenchTemplate(SupervisedTemplate):
    """An Avalanche strategy that trains and queries a clbench :class:`Strategy`."""

    def __init__(
        self,
        *,
        strategy: Strategy,
        layout: BenchmarkLayout,
        evaluator: Any = default_evaluator,
        plugins: Optional[Sequence[Any]] = None,
        device: Union[str, torch.device] = "cpu",
        eval_mb_size: int = 512,
        eval_every: int = -1,
        val_fraction: float = 0.1,
        seed: int = 0,
        data_root: Optional[Path] = None,
    ) -> None:
        super().__init__(
            model=strategy, optimizer=None, criterion=CrossEntropyLoss(),
            train_mb_size=strategy.config.batch_size, train_epochs=strategy.config.epochs,
            eval_mb_size=eval_mb_size, device=device, plugins=plugins, evaluator=evaluator, eval_every=eval_every,
        )
        self.strategy, self.layout, self.val_fraction = strategy, layout, val_fraction
        self.data_generator = torch.Generator().manual_seed(seed)  # train/validation split and data order
        self.trained: list[int] = []  # experience indices trained so far
        self._prepared = False
        self._evaluated: Optional[Strategy] = None
        self.data_root = data_root

    # -- training: the strategy's own hooks -----------------------------------------
    def make_train_dataloader(self, **kwargs: Any) -> None:
        """The strategy batches its data itself (through a LearnerView)."""
        self.dataloader = []

    def check_model_and_optimizer(self, **kwargs: Any) -> None:
        """The strategy owns its optimisers; Avalanche must not rebuild or reset them."""

    def _train_exp(self, experience: Any, eval_streams: Any = None, **kwargs: Any) -> None:
        i = int(experience.current_experience)
        if not self._prepared:
            from clbench.api.auxdata import load_aux

            aux, _ = load_aux(self.strategy.aux_requests(), data_root=self.data_root,
                              input_shape=self.layout.input_shape, stream_dataset=self.strategy.info.dataset)
            self.strategy.prepare(aux)
            self._prepared = True
        shows_task = self.layout.kind == TASK_INCREMENTAL
        task = self.layout.task_labels[i] if shows_task else None
        data = AvalancheData(self.adapted_dataset, self.layout.offsets[i], f"avalanche-exp{i}")
        train, validation = split_validation(data, self.val_fraction, self.data_generator)
        encoder = self.strategy.frozen_encoder()
        if encoder is not None:  # encoded once (and cached), as the protocol does
            encoder.to(self.device)
            train, validation = (None if d is None else encode(encoder, d, device=self.device) for d in (train, validation))
        view = LearnerView(train, validation, task_id=task, device=self.device, generator=self.data_generator)
        train_experience(self.strategy, view, ExperienceInfo(i, tuple(self.layout.classes[i]), task))
        self.trained.append(i)

    # -- evaluation: Avalanche's loop on strategy.predict ----------------------------
    def _before_eval(self, **kwargs: Any) -> None:
        self._evaluated = self.evaluation_copy()
        super()._before_eval(**kwargs)

    def _after_eval(self, **kwargs: Any) -> None:
        super()._after_eval(**kwargs)
        self._evaluated = None

    def evaluation_copy(self) -> Strategy:
        """The protocol's evaluation copy of the learner, ``before_eval`` done, in eval
        mode: Avalanche's evaluation never touches the live learner either."""
        copy_, _ = evaluation_copy(self.strategy)
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):  # Avalanche evaluates under no_grad;
            torch.manual_seed(self.strategy.seed * 1_000_003 + len(self.trained))  # before_eval may train
            copy_.before_eval()
        return copy_.eval()

    def forward(self) -> torch.Tensor:
        task = self.mb_task_id if self.layout.kind == TASK_INCREMENTAL else None
        if not self.is_eval:  # Avalanche never trains through forward here; keep it honest anyway
            raise RuntimeError("ClbenchTemplate trains through the strategy's own hooks")
        scores = self._predict(self._evaluated or self.evaluation_copy(), self.mb_x, task)
        allowed = self.allowed_classes(task).to(scores.device)
        fill = scores.detach().min() - MASK_MARGIN
        if not bool(allowed.any()):  # protocol row 0 (class-incremental): nothing seen, no answer is right
            return torch.cat([torch.full_like(scores, float(fill)), scores.new_zeros(len(scores), 1)], dim=1)
        return torch.where(allowed, scores, fill)

    def allowed_classes(self, task: Optional[torch.Tensor]) -> torch.Tensor:
        """(batch or 1, num_classes) mask: the protocol's classes for each sample."""
        n = self.layout.num_classes
        if task is not None:
            by_task = {t: c for t, c in zip(self.layout.task_labels, self.layout.classes)}
            mask = torch.zeros(len(task), n, dtype=torch.bool)
            for k, t in enumerate(task.tolist()):
                mask[k, list(by_task[int(t)])] = True
            return mask
        seen = {c for i in self.trained for c in self.layout.classes[i]}
        mask = torch.zeros(1, n, dtype=torch.bool)
        mask[0, sorted(seen)] = True
        return mask

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The learner's scores (on an evaluation copy; frozen encoder applied)."""
        return self._predict(self.evaluation_copy(), x, task)

    @staticmethod
    @torch.no_grad()
    def _predict(model: Strategy, x: torch.Tensor, task: Optional[torch.Tensor]) -> torch.Tensor:
        encoder = model.frozen_encoder()
        out = model.predict(x if encoder is None else encoder.eval()(x), task)
        return out.scores if isinstance(out, Prediction) else out

    # -- state (Avalanche's dill checkpoint cannot pickle torch optimisers) ----------
    def state_dict(self) -> dict:
        """The strategy's state and the adapter's progress, loadable with ``weights_only=True``."""
        return {"strategy": self.strategy.state_dict(), "trained": list(self.trained), "prepared": self._prepared}

    def load_state_dict(self, state: dict) -> None:
        self.strategy.load_state_dict(state["strategy"])
        self.trained, self._prepared = list(state["trained"]), bool(state["prepared"])


@contextmanager
def _seeded(seed: int):
    """Seed torch's global generator for a block (weight init) and restore it after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _backbone_config(backbone: Union[None, str, BackboneConfig]) -> BackboneConfig:
    if backbone is None:
        return BackboneConfig(name="cnn28")
    if isinstance(backbone, str):
        if backbone not in BACKBONE_PRESETS:
            raise ValueError(f"unknown backbone preset {backbone!r}; valid choices: {sorted(BACKBONE_PRESETS)}")
        return dataclasses.replace(BACKBONE_PRESETS[backbone])
    return backbone


def make_strategy(
    name: str,
    *,
    benchmark: Any,
    backbone: Union[None, str, BackboneConfig] = None,
    kind: Optional[str] = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    data_root: Optional[Path] = None,
    **overrides: Any,
) -> ClbenchTemplate:
    """Build the clbench strategy ``name`` for ``benchmark`` as an Avalanche strategy.

    ``overrides`` are the strategy's config fields (e.g. ``epochs=1``) and the usual
    template arguments (``evaluator``, ``plugins``, ``device``, ``eval_mb_size``,
    ``eval_every``). Task labels reach the strategy only on task-labelled benchmarks;
    a strategy that needs them is refused on others.
    """
    cls = STRATEGIES.get(name)
    layout = read_layout(benchmark, kind)
    check_compatible(cls, layout.kind, f"avalanche benchmark {type(benchmark).__name__}")
    fields = {f.name for f in dataclasses.fields(cls.config_class)} - {"name"}
    template_args = {k: overrides.pop(k) for k in TEMPLATE_ARGS if k in overrides}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"unknown argument(s) {unknown} for strategy {name!r}; valid: config fields "
                        f"{sorted(fields)} and template arguments {list(TEMPLATE_ARGS)}")
    config = cls.config_class(name=name, **overrides)
    info = layout.info(f"avalanche:{type(benchmark).__name__}", val_fraction)
    if backbone is None:
        backbone = cls.preferred_backbone(info)
    with _seeded(seed):
        strategy = cls(config, info, _backbone_config(backbone), seed=seed)
    return ClbenchTemplate(strategy=strategy, layout=layout, val_fraction=val_fraction, seed=seed, data_root=data_root,
                           **template_args)
