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
column that wins (the protocol's row 0 is 0 by construction); on a multi-head benchmark
whose class ids restart in each task, the targets are made global as the scores are. So
Avalanche's metrics on this template are the clbench protocol's numbers. After the
benchmark's last experience the strategy's ``end_stream`` runs, as in the protocol.

Training metrics: the strategy's own steps fire Avalanche's training callbacks. An
epoch is a shuffled pass of the strategy over its training batches (whatever its own
schedule: CLR's early stopping, DKVB's epochs over cached features), an iteration is
one of its optimisation steps. ``before_training_epoch`` and ``before_training_iteration``
fire before the pass and the batch; after the step ``before_forward`` ...
``after_update`` and ``after_training_iteration`` fire in Avalanche's order with
``mb_x``, ``mb_y``, ``mb_task_id``, ``mb_output`` (the logits and targets of the step's
loss, on the incoming batch's rows) and ``loss`` (the step's loss) set. They are for
observers (metrics, loggers, early stopping): a plugin that changes Avalanche's own
data, loss, gradients or optimiser would do nothing here and is refused by name.
``stop_training()`` (``EarlyStoppingPlugin``) ends the strategy's pass and its
remaining epochs; periodic evaluation (``eval_every``) evaluates mid-experience with
the classes of the experience being trained already scored.

The evaluation loss is the cross-entropy over the classes the protocol scores for the
sample plus its own class (all classes before any training), so an experience not
trained yet has a finite loss, not the masking margin.
"""
from __future__ import annotations

import dataclasses
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import CrossEntropyLoss

from avalanche.training.plugins.evaluation import default_evaluator
from avalanche.training.templates import SupervisedTemplate

from clbench.api.data import split_validation
from clbench.api.strategy import STRATEGIES, Strategy, harnessed
from clbench.avalanche.benchmark import AvalancheData, BenchmarkLayout, BridgeError, BridgeTypeError, read_layout
from clbench.avalanche.iterations import EpochView, LossCapture, minibatch_rows
from clbench.avalanche.user_model import user_backbone, was_built
from clbench.models.backbones import BACKBONE_PRESETS, BackboneConfig
from clbench.models.features import encode
from clbench.protocol import check_compatible, evaluation_copy, train_experience
from clbench.protocol.phases import PhaseClock
from clbench.types import TASK_INCREMENTAL, Batch, ExperienceInfo, Prediction

#: Avalanche template arguments ``make_strategy`` passes on (the rest configure the strategy).
TEMPLATE_ARGS = ("evaluator", "plugins", "device", "eval_mb_size", "eval_every")
MASK_MARGIN = 1000.0  # masked classes score this far below the batch minimum (Avalanche masks with -1000)
#: Avalanche plugins that work on this template (metrics and loggers, which go into the
#: evaluator, are observers and always work); every other plugin of
#: ``avalanche.training.plugins`` changes Avalanche's own training step and is refused
WORKING_PLUGINS = ("EvaluationPlugin", "EarlyStoppingPlugin")


def check_plugins(plugins: Optional[Sequence[Any]]) -> None:
    """Refuse plugins that change Avalanche's own training (data, loss, gradients, model,
    optimiser): a clbench strategy trains through its own hooks, so they would do nothing."""
    for p in plugins or ():
        cls = type(p)
        if cls.__module__.startswith("avalanche.training.plugins") and cls.__name__ not in WORKING_PLUGINS:
            raise BridgeError(
                f"plugin {cls.__name__} changes Avalanche's own training step (data, loss, gradients, model or "
                f"optimiser), which a clbench strategy does not use: it trains through its own hooks, so "
                f"{cls.__name__} would silently do nothing. Plugins that work: {', '.join(WORKING_PLUGINS)}, "
                f"metrics and loggers (in the evaluator) and your own observers; replay, regularisation and the "
                f"like are clbench strategies or add-ons (clbench list)")


def scored_loss(scores: torch.Tensor, allowed: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the classes ``allowed`` (a (batch or 1, classes) mask) plus each
    sample's own class; over all classes where none is allowed yet (before any training)."""
    if not bool(allowed.any()):
        return F.cross_entropy(scores, y)
    mask = allowed.to(scores.device).expand_as(scores).clone()
    mask[torch.arange(len(y), device=scores.device), y] = True
    return F.cross_entropy(scores.masked_fill(~mask, float("-inf")), y)


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
        check_plugins(plugins)
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
        self._training: Optional[int] = None  # the experience being trained (its classes are scored mid-training)
        self._capture = LossCapture()
        self._task_label = 0
        self._iterating = False  # a batch was handed out and its step has not come yet
        self._warned_no_loss = False
        self._ended_stream = False
        self._eval_scores: Optional[tuple[torch.Tensor, torch.Tensor]] = None  # raw scores, allowed mask

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
        view = EpochView(train, validation, task_id=task, device=self.device, generator=self.data_generator,
                         epoch=self._epoch)
        self._training, self._task_label = i, int(self.layout.task_labels[i])
        self._capture.arm()
        try:
            with harnessed(self.strategy, clock=PhaseClock(), on_step=self._after_step), self._capture:
                train_experience(self.strategy, view, ExperienceInfo(i, tuple(self.layout.classes[i]), task))
                if i == len(self.layout.classes) - 1 and not self._ended_stream:
                    self.strategy.end_stream()  # the stream is over (k-FPF's last finetuning phase)
                    self._ended_stream = True
        finally:
            self._training, self._iterating, self._stop_training = None, False, False
        self.trained.append(i)

    # -- Avalanche's training callbacks, from the strategy's own steps ----------------
    def _epoch(self, batches: Iterator[Batch], n_batches: int) -> Iterator[Batch]:
        """One epoch: a shuffled pass of the strategy over training batches. A plugin's
        ``stop_training()`` ends it (after its current step) and empties the ones after."""
        if self._stop_training:
            return
        self.dataloader = range(n_batches)  # its length: progress bars (InteractiveLogger)
        self._before_training_epoch()
        if self._stop_training:  # e.g. EarlyStoppingPlugin, which checks before each epoch
            return
        for batch in batches:
            self._begin_iteration(batch)
            yield batch
            if self._stop_training:
                break
        self._after_training_epoch()

    def _begin_iteration(self, batch: Batch, arm: bool = True) -> None:
        if arm:
            self._capture.arm()
        self.mbatch = [batch.x, batch.y, self._task_ids(len(batch), batch.y.device)]
        self._iterating = True
        self._before_training_iteration()

    def _task_ids(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.full((n,), self._task_label, dtype=torch.long, device=device)

    def _after_step(self, batch: Batch, stats: Any) -> None:
        """The strategy made one optimisation step: Avalanche's iteration callbacks on it."""
        captured = self._capture.take()
        if not self._iterating:  # a step outside a pass over the view (e.g. a trainer of its own)
            self._begin_iteration(batch, arm=False)
        self._iterating = False
        rows = minibatch_rows(captured, batch)
        if rows is None:
            if not self._warned_no_loss:
                self._warned_no_loss = True
                warnings.warn(f"strategy {self.strategy.config.name!r} computed its step's loss without "
                              "torch.nn.functional's cross_entropy, nll_loss or binary_cross_entropy_with_logits: "
                              "Avalanche's iteration metrics get no outputs for its steps", RuntimeWarning)
            return
        self.mb_output, y = rows
        self.mbatch = [batch.x, y, self._task_ids(len(y), y.device)]
        loss = stats.loss if stats is not None else float("nan")
        self.loss = torch.as_tensor(loss, device=y.device).detach().float()
        for fire in (self._before_forward, self._after_forward, self._before_backward, self._after_backward,
                     self._before_update, self._after_update, self._after_training_iteration):
            fire()

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

    def _unpack_minibatch(self) -> None:
        super()._unpack_minibatch()
        if self.is_eval and any(self.layout.offsets):  # local class ids of a multi-head benchmark: made global
            by_task = dict(zip(self.layout.task_labels, self.layout.offsets))
            y = self.mbatch[1]
            offsets = [by_task.get(int(t), 0) for t in self.mbatch[-1].tolist()]
            self.mbatch[1] = y + torch.tensor(offsets, device=y.device)

    def forward(self) -> torch.Tensor:
        task = self.mb_task_id if self.layout.kind == TASK_INCREMENTAL else None
        if not self.is_eval:  # Avalanche never trains through forward here; keep it honest anyway
            raise RuntimeError("ClbenchTemplate trains through the strategy's own hooks")
        scores = self._predict(self._evaluated or self.evaluation_copy(), self.mb_x, task)
        allowed = self.allowed_classes(task).to(scores.device)
        self._eval_scores = (scores, allowed)
        fill = scores.detach().min() - MASK_MARGIN
        if not bool(allowed.any()):  # protocol row 0 (class-incremental): nothing seen, no answer is right
            return torch.cat([torch.full_like(scores, float(fill)), scores.new_zeros(len(scores), 1)], dim=1)
        return torch.where(allowed, scores, fill)

    def criterion(self) -> torch.Tensor:
        """Evaluation: :func:`scored_loss` on the strategy's scores (finite on classes not
        trained yet, where the masked output would give the masking margin)."""
        if self.is_eval and self._eval_scores is not None:
            scores, allowed = self._eval_scores
            self._eval_scores = None
            return scored_loss(scores, allowed, self.mb_y.to(scores.device))
        return super().criterion()

    def allowed_classes(self, task: Optional[torch.Tensor]) -> torch.Tensor:
        """(batch or 1, num_classes) mask: the protocol's classes for each sample (while an
        experience trains, e.g. evaluated by ``eval_every``, its classes count as seen)."""
        n = self.layout.num_classes
        if task is not None:
            by_task = {t: c for t, c in zip(self.layout.task_labels, self.layout.classes)}
            mask = torch.zeros(len(task), n, dtype=torch.bool)
            for k, t in enumerate(task.tolist()):
                mask[k, list(by_task[int(t)])] = True
            return mask
        done = self.trained + ([self._training] if self._training is not None else [])
        seen = {c for i in done for c in self.layout.classes[i]}
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
        return {"strategy": self.strategy.state_dict(), "trained": list(self.trained), "prepared": self._prepared,
                "ended_stream": self._ended_stream}

    def load_state_dict(self, state: dict) -> None:
        self.strategy.load_state_dict(state["strategy"])
        self.trained, self._prepared = list(state["trained"]), bool(state["prepared"])
        self._ended_stream = bool(state.get("ended_stream", False))


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
            raise BridgeError(f"unknown backbone preset {backbone!r}; valid choices: {sorted(BACKBONE_PRESETS)}")
        return dataclasses.replace(BACKBONE_PRESETS[backbone])
    return backbone


def make_strategy(
    name: str,
    *,
    benchmark: Any,
    backbone: Union[None, str, BackboneConfig] = None,
    model: Optional[nn.Module] = None,
    kind: Optional[str] = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    data_root: Optional[Path] = None,
    **overrides: Any,
) -> ClbenchTemplate:
    """Build the clbench strategy ``name`` for ``benchmark`` as an Avalanche strategy.

    ``overrides`` are the strategy's config fields (e.g. ``epochs=1``) and the usual
    template arguments (``evaluator``, ``plugins``, ``device``, ``eval_mb_size``,
    ``eval_every``). ``backbone``: a preset name or a ``BackboneConfig``; ``model``: your
    own ``nn.Module`` from inputs to features instead (the strategy adds its head; refused
    by strategies that build no backbone). Task labels reach the strategy only on
    task-labelled benchmarks; a strategy that needs them is refused on others.
    """
    cls = STRATEGIES.get(name)
    layout = read_layout(benchmark, kind)
    check_compatible(cls, layout.kind, f"avalanche benchmark {type(benchmark).__name__}")
    fields = {f.name for f in dataclasses.fields(cls.config_class)} - {"name"}
    template_args = {k: overrides.pop(k) for k in TEMPLATE_ARGS if k in overrides}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise BridgeTypeError(f"unknown argument(s) {unknown} for strategy {name!r}; valid: config fields "
                        f"{sorted(fields)}, template arguments {list(TEMPLATE_ARGS)}, backbone, model, kind, seed, "
                        "val_fraction, data_root")
    check_plugins(template_args.get("plugins"))
    config = cls.config_class(name=name, **overrides)
    info = layout.info(f"avalanche:{type(benchmark).__name__}", val_fraction)
    if model is not None:
        if backbone is not None:
            raise BridgeError("give backbone= or model=, not both: model= is your own backbone module")
        backbone = user_backbone(model, layout.input_shape)
    elif backbone is None:
        backbone = cls.preferred_backbone(info)
    with _seeded(seed):
        strategy = cls(config, info, _backbone_config(backbone), seed=seed)
    if model is not None and not was_built(backbone):
        raise BridgeError(f"strategy {name!r} builds no backbone from its backbone config (its model is its own, "
                         f"or its settings use none, e.g. encoder=identity), so it cannot use "
                         f"model={type(model).__name__}; drop model= (strategies with a backbone: naive, er, joint, "
                         "kfpf, ...)")
    return ClbenchTemplate(strategy=strategy, layout=layout, val_fraction=val_fraction, seed=seed, data_root=data_root,
                           **template_args)
