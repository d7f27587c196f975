"""CLR: channel-wise lightweight reprogramming (Ge et al., ICCV 2023, arXiv 2307.11386).

A frozen pretrained CNN is shared by every task. After each conv larger than 1x1 (in
``clr_full``: after every conv) a 3x3 depthwise conv R, initialised to the identity,
sits before that conv's BatchNorm: conv -> R -> BN -> ReLU. Each task owns its R
kernels, its BatchNorms (affine and running statistics) and a linear head, and starts
from the pretrained trunk. The task id picks the state at test time, so no task's
state is touched once learnt: forgetting is zero by construction.

Recipe (the authors' main.py / utils.py): Adam 1e-3, StepLR /10 every 20 epochs, up to
60 epochs, early stopping once more than 21 epochs pass without a better validation
accuracy (best state kept), batch 32, loss = cross-entropy + 1e-5 x sum of the
unsquared L2 norms of the trainable tensors.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from clbench.api.strategy import Strategy, StrategyConfig, register_strategy
from clbench.api.view import LearnerView
from clbench.fields import setting
from clbench.models.backbones import Backbone, BackboneConfig, create_backbone
from clbench.models.pretrain import TRUNK_CHOICES, pretrain_on_digits, resolve_trunk
from clbench.paths import weights_cache_dir
from clbench.types import TASK_INCREMENTAL, Batch, ExperienceInfo, StepStats

@dataclass
class CLRConfig(StrategyConfig):
    """Defaults are the official recipe. ``trunk`` says where the frozen trunk's weights
    come from: ``backbone`` (``backbone.weights``: torchvision or a file), ``digits``
    (supervised pretraining on scikit-learn's digits, disjoint from the stream, cached
    under ``cache_dir``), ``random`` (not CLR's premise; recorded as a deviation) or
    ``auto`` (``backbone`` when weights are given, ``digits`` for cnn28, else an error)."""

    epochs: int = setting(60, "most epochs per task (early stopping may end it sooner)", ge=1)
    batch_size: int = setting(32, "samples per training batch", ge=1)
    lr: float = setting(1e-3, "Adam learning rate", gt=0)
    lr_step: int = setting(20, "StepLR: epochs between learning-rate drops", ge=1)
    lr_gamma: float = setting(0.1, "StepLR: factor of each drop", gt=0, le=1)
    patience: int = setting(21, "early stopping: epochs without a better validation accuracy", ge=0)
    reg: float = setting(1e-5, "weight of the sum of unsquared L2 norms of the task's trainable tensors", ge=0)
    trunk: str = setting("auto", "where the frozen trunk's weights come from", choices=TRUNK_CHOICES, recipe=False)
    pretrain_epochs: int = setting(20, "epochs of the offline digits pretraining (trunk=digits)", ge=1, recipe=False)
    pretrain_seed: int = setting(0, "seed of the offline digits pretraining", ge=0, recipe=False)
    cache_dir: Optional[str] = setting(None, "where pretrained trunks are cached (default $CLBENCH_CACHE/weights)",
                                       recipe=False)


# -- the reprogrammed network --------------------------------------------------------
class _Router:
    """Which task's state the slots of one network use during the current forward."""

    def __init__(self) -> None:
        self.state: Optional["TaskState"] = None

    def active(self) -> "TaskState":
        if self.state is None:
            raise RuntimeError("no task state is active: call ReprogrammedNet(x, state)")
        return self.state


class ConvSlot(nn.Module):
    """A frozen conv followed by the active task's depthwise reprogramming kernel R."""

    def __init__(self, conv: nn.Conv2d, key: str, router: _Router) -> None:
        super().__init__()
        self.conv, self.key, self._router = conv, key, router

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._router.active().reprogram[self.key](self.conv(x))


class NormSlot(nn.Module):
    """The active task's BatchNorm in place of a pretrained one; the pretrained one is
    kept (frozen, unused in forward) as every task's starting point."""

    def __init__(self, bn: nn.BatchNorm2d, key: str, router: _Router) -> None:
        super().__init__()
        self.pretrained, self.key, self._router = bn, key, router

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._router.active().norm[self.key](x)


class TaskState(nn.Module):
    """Everything one task owns: R kernels, BatchNorms, a head, and its global class ids."""

    def __init__(self, reprogram: dict, norm: dict, head: nn.Linear, classes: list[int]) -> None:
        super().__init__()
        self.reprogram, self.norm, self.head = nn.ModuleDict(reprogram), nn.ModuleDict(norm), head
        self.classes = list(classes)

    def get_extra_state(self) -> dict:
        return {"classes": self.classes}

    def set_extra_state(self, state: dict) -> None:
        self.classes = list(state["classes"])


def identity_depthwise(channels: int) -> nn.Conv2d:
    """A 3x3 depthwise conv (stride 1, padding 1, no bias) that starts as the identity."""
    r = nn.Conv2d(channels, channels, 3, stride=1, padding=1, groups=channels, bias=False)
    nn.init.dirac_(r.weight, groups=channels)
    return r


def install_slots(module: nn.Module, router: _Router, wrap_1x1: bool, prefix: str = "") -> None:
    """Replace, in place, every conv with a kernel larger than 1x1 (every conv if
    ``wrap_1x1``) by a :class:`ConvSlot` and every BatchNorm2d by a :class:`NormSlot`."""
    for name, child in module.named_children():
        key = f"{prefix}{name}"
        if isinstance(child, nn.Conv2d) and (wrap_1x1 or tuple(child.kernel_size) != (1, 1)):
            setattr(module, name, ConvSlot(child, key, router))
        elif isinstance(child, nn.BatchNorm2d):
            setattr(module, name, NormSlot(child, key, router))
        else:
            install_slots(child, router, wrap_1x1, prefix=f"{key}_")


class ReprogrammedNet(nn.Module):
    """A frozen backbone with per-task slots; ``forward(x, state)`` runs task ``state``."""

    def __init__(self, backbone: Backbone, wrap_1x1: bool) -> None:
        super().__init__()
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.backbone, self.wrap_1x1 = backbone, wrap_1x1
        self._router = _Router()
        install_slots(backbone, self._router, wrap_1x1)
        keys = [m.key for m in self.slots()]
        if len(set(keys)) != len(keys):
            raise ValueError(f"slot names collide in {type(backbone.trunk).__name__}: {sorted(keys)}")

    def slots(self) -> list[nn.Module]:
        return [m for m in self.backbone.modules() if isinstance(m, (ConvSlot, NormSlot))]

    def new_state(self, classes: list[int], generator: torch.Generator) -> TaskState:
        """Identity R, the pretrained BatchNorms, and a fresh head: the pretrained network."""
        reprogram, norm = {}, {}
        for slot in self.slots():
            if isinstance(slot, ConvSlot):
                reprogram[slot.key] = identity_depthwise(slot.conv.out_channels)
            else:
                bn = copy.deepcopy(slot.pretrained)
                bn.requires_grad_(True)
                norm[slot.key] = bn
        head = nn.Linear(self.backbone.out_features, len(classes))
        bound = 1.0 / math.sqrt(head.in_features)  # nn.Linear's own init, drawn from our generator
        with torch.no_grad():
            head.weight.uniform_(-bound, bound, generator=generator)
            head.bias.uniform_(-bound, bound, generator=generator)
        return TaskState(reprogram, norm, head, classes).to(next(self.backbone.parameters()).device)

    def forward(self, x: torch.Tensor, state: TaskState) -> torch.Tensor:
        self._router.state = state
        try:
            return state.head(self.backbone(x))
        finally:
            self._router.state = None


def task_state_sizes(state: TaskState) -> dict[str, int]:
    """Element counts of a task's state by kind (the per-task increment)."""
    r = sum(p.numel() for p in state.reprogram.parameters())
    affine = sum(p.numel() for p in state.norm.parameters())
    stats = sum(b.numel() for n, b in state.norm.named_buffers() if n.endswith(("running_mean", "running_var")))
    counters = sum(b.numel() for n, b in state.norm.named_buffers() if n.endswith("num_batches_tracked"))
    head = sum(p.numel() for p in state.head.parameters())
    return {"reprogram": r, "bn_affine": affine, "bn_stats": stats, "bn_counters": counters, "head": head,
            "with_bn_affine": r + affine, "excluding_head": r + affine + stats}


# -- the strategy ---------------------------------------------------------------------
@register_strategy("clr")
class CLR(Strategy):
    """Channel-wise lightweight reprogramming; ``clr`` skips the 1x1 convs (the paper's
    default), ``clr_full`` reprograms them too."""

    config_class = CLRConfig
    kinds = frozenset({TASK_INCREMENTAL})
    needs = frozenset({"task_id_train", "task_id_test", "boundaries"})
    paper_defaults = True
    paper_backbone = "resnet18"
    uses_validation = True  # the best epoch is chosen on the validation split
    wrap_1x1 = False
    state_attrs = ("history",)  # each task's epoch selection, for describe() after a resume

    def __init__(self, config: CLRConfig, info, backbone: Optional[BackboneConfig] = None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self.backbone_config = backbone = backbone or BackboneConfig(name="resnet18", weights="IMAGENET1K_V1",
                                                                     input_size=224, normalize="imagenet")
        self.trunk_kind = resolve_trunk(
            config.trunk, backbone, method="CLR", offline_backbone="cnn28",
            weights_hint="backbone.weights=IMAGENET1K_V1 (torchvision; needs network or a warm torch hub cache) or "
                         "backbone.weights=/path/to/weights.pth")
        if self.trunk_kind == "digits" and "digit" in info.name.lower():
            raise ValueError(f"strategy.trunk=digits pretrains on sklearn digits, which is not disjoint from scenario "
                             f"{info.name!r}; pass backbone.weights=<file> or strategy.trunk=random")
        self.network = ReprogrammedNet(create_backbone(backbone, info.input_shape), self.wrap_1x1)
        self._pending = self.trunk_kind == "digits"  # weights come in prepare()
        self.pretraining: Optional[dict] = None
        self.tasks = nn.ModuleDict()
        self.history: dict[str, dict] = {}
        self._active_key: Optional[str] = None  # the task being learnt

    # -- hooks ------------------------------------------------------------------------
    def aux_requests(self) -> dict[str, str]:
        return {"pretraining": "sklearn_digits"} if self._pending else {}

    def prepare(self, aux) -> None:
        """Pretrain the trunk on digits (or load the cached weights) where asked."""
        if not self._pending:
            return
        if len(self.tasks):
            raise RuntimeError("the trunk must be prepared before any task is learnt")
        c = self.config
        bb, shape = self.backbone_config, self.info.input_shape
        settings = {"recipe": "digits-v1", "backbone": dataclasses.asdict(bb) | {"weights": "none"},
                    "input_shape": list(shape), "epochs": c.pretrain_epochs, "seed": c.pretrain_seed}
        path, self.pretraining = pretrain_on_digits(
            bb, shape, aux["pretraining"].data, epochs=c.pretrain_epochs, seed=c.pretrain_seed, batch_size=64,
            device=self.device, cache_dir=weights_cache_dir(c.cache_dir), method="clr", key_settings=settings,
            data_note="sklearn.datasets.load_digits (8x8, upsampled)")
        trained = create_backbone(dataclasses.replace(self.backbone_config, weights=str(path)), self.info.input_shape)
        trained.weights_source = f"pretrained by clr on sklearn digits ({trained.weights_source})"
        device = self.device
        self.network = ReprogrammedNet(trained, self.wrap_1x1).to(device)
        self._pending = False

    def begin_experience(self, info: ExperienceInfo) -> None:
        """A new task state (identity R, pretrained BN, fresh head) and a fresh optimizer over it alone."""
        if self._pending:
            raise RuntimeError("CLR's trunk is pretrained in prepare(aux) (clbench.api.auxdata.aux_for(strategy)); "
                               "call it before the first experience")
        if info.task_id is None:
            raise ValueError("CLR needs the task id in training; this scenario hides it")
        key = str(info.task_id)
        if key in self.tasks:
            raise ValueError(f"task id {info.task_id} seen twice; CLR learns each task once (task-incremental)")
        self.tasks[key] = state = self.network.new_state(list(info.classes), self.generator)
        self._active_key, self._lookup = key, self._local_labels(state)
        self.optimizer = torch.optim.Adam(state.parameters(), lr=self.config.lr)

    def train_experience(self, view: LearnerView) -> None:
        """Adam + StepLR on this task's state only; keep the epoch best on validation."""
        c = self.config
        if self._active_key is None or self._active_key != str(view.task_id):
            raise RuntimeError("CLR.train_experience needs begin_experience for the same task first")
        state = self.tasks[self._active_key]
        scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, c.lr_step, c.lr_gamma)
        accs: list[float] = []
        best_acc, best_epoch, best = -math.inf, 0, None
        for epoch in range(1, c.epochs + 1):
            state.train()
            for batch in view.batches(c.batch_size):
                self.observe(batch)
            scheduler.step()
            if view.validation is None:
                continue
            acc = self._accuracy(view, state)
            accs.append(acc)
            if acc > best_acc:
                best_acc, best_epoch, best = acc, epoch, copy.deepcopy(state.state_dict())
            elif epoch - best_epoch > c.patience:
                break
        if best is not None:
            state.load_state_dict(best)
        self.history[str(view.task_id)] = {
            "val_accuracy": accs, "best_epoch": best_epoch if best is not None else epoch, "epochs_run": epoch,
            "selected_on": "validation" if best is not None else "none (no validation split: last epoch)",
        }

    def end_experience(self) -> None:
        self._active_key = None

    def observe(self, batch: Batch) -> StepStats:
        """One Adam step on cross-entropy plus the norm regulariser of the active task."""
        if self._active_key is None:
            raise RuntimeError("CLR.observe outside an experience: begin_experience(info) first")
        state = self.tasks[self._active_key]
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.network(batch.x, state)
        loss = F.cross_entropy(logits, self._lookup[batch.y]) + self.config.reg * regulariser(state)
        loss.backward()
        self.optimizer.step()
        return StepStats(loss=loss.detach(), n=len(batch))

    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Each sample through its task's state; its head fills that task's class columns.
        A task not learnt yet scores all classes equally (zeros)."""
        if task is None:
            raise ValueError("CLR needs the task id at test time (task-incremental scenarios)")
        scores = torch.zeros(len(x), self.info.num_classes, device=x.device)
        for t in torch.unique(task).tolist():
            state = self.tasks[str(t)] if str(t) in self.tasks else None
            if state is None:
                continue
            rows = task == t
            out = torch.full((int(rows.sum()), self.info.num_classes), -math.inf, device=x.device)
            out[:, state.classes] = self.network(x[rows], state)
            scores[rows] = out
        return scores

    # -- helpers ----------------------------------------------------------------------
    def _local_labels(self, state: TaskState) -> torch.Tensor:
        lookup = torch.full((self.info.num_classes,), -100, dtype=torch.long, device=self.device)
        lookup[state.classes] = torch.arange(len(state.classes), device=self.device)
        return lookup

    @torch.no_grad()
    def _accuracy(self, view: LearnerView, state: TaskState) -> float:
        state.eval()
        right = n = 0
        for batch in view.batches(max(self.config.batch_size, 256), split="validation"):
            right += int((self.network(batch.x, state).argmax(1) == self._lookup[batch.y]).sum())
            n += len(batch)
        state.train()
        return right / max(n, 1)

    def structure(self) -> dict:
        """The task states grown so far, by task id, with their classes."""
        return {"tasks": {key: list(state.classes) for key, state in self.tasks.items()}}

    def build_structure(self, structure: dict) -> None:
        """Grow the saved task states (their tensors load next; a throwaway generator for
        the head init, so ours is left as the checkpoint restores it)."""
        for key, classes in structure["tasks"].items():
            if key not in self.tasks:
                self.tasks[key] = self.network.new_state(list(classes), torch.Generator())

    def increment(self) -> dict[str, int]:
        """The per-task increment excluding the head (the same for every task)."""
        probe = self.network.new_state([0], torch.Generator())
        return task_state_sizes(probe)

    def describe(self) -> dict:
        inc = self.increment()
        trunk = sum(p.numel() for p in self.network.backbone.parameters())
        return {
            "variant": self.name,
            "trunk": self.trunk_kind,
            "trunk_weights": self.network.backbone.weights_source,
            "pretraining": self.pretraining,
            "trunk_params": trunk,
            "increment_per_task": inc,
            "increment_fraction_of_trunk": {k: inc[k] / trunk for k in ("reprogram", "with_bn_affine", "excluding_head")},
            "heads": {k: task_state_sizes(s)["head"] for k, s in self.tasks.items()},
            "selection": "early stopping on the protocol's validation split",
            "per_task": self.history,
        }

    def deviations(self) -> list[str]:
        out = list(super().deviations())
        out.append("epoch selection on the held-out validation split (official code: on the evaluation split)")
        bb = self.backbone_config
        if self.trunk_kind == "digits":
            out.append(f"trunk pretrained on sklearn digits for {self.config.pretrain_epochs} epochs (paper: ImageNet-1k)")
        elif self.trunk_kind == "random":
            out.append("trunk: random init, frozen, not pretrained (paper: ImageNet-1k pretrained)")
        elif bb.weights != "IMAGENET1K_V1":
            out.append(f"trunk weights {bb.weights} (paper: torchvision IMAGENET1K_V1)")
        if bb.name in ("resnet18", "resnet50") and (bb.input_size != 224 or bb.normalize != "imagenet"):
            out.append(f"input {bb.input_size} / normalize {bb.normalize} (paper: 224x224, ImageNet normalisation)")
        return out


@register_strategy("clr_full")
class CLRFull(CLR):
    """CLR that also reprograms the 1x1 (downsample) convs with a 3x3 depthwise layer."""

    wrap_1x1 = True


def regulariser(state: TaskState) -> torch.Tensor:
    """Sum of the unsquared L2 norms of the task's trainable tensors. (The official code
    skips zero-norm tensors; torch's norm already has a zero gradient there.)"""
    return torch.stack([p.norm() for p in state.parameters() if p.requires_grad]).sum()
