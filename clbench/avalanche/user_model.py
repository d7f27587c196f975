"""``make_strategy(..., model=my_module)``: the user's own module as the strategy's backbone.

The module maps inputs to features (the strategy adds its own head on top, as with
``backbone=``). It goes through the backbone registry under a name of its own,
``_model:<Class>-<digest>`` (the digest covers its code, structure and weights, so caches
keyed by the backbone, e.g. pretrained trunks, never mix two modules): the strategy's
first build gets the module itself (trained in place, as Avalanche users expect);
a later build gets a fresh copy of the same architecture (``reset_parameters``), or a copy
with the weights of a file where the strategy asks for one (e.g. a trunk it pretrained).
"""
from __future__ import annotations

import copy
import weakref
from typing import Optional

import torch
from torch import nn

from clbench.avalanche.benchmark import BridgeError, BridgeTypeError
from clbench.models.backbones import BACKBONES, Backbone, BackboneConfig, InputAdapter, load_weights_file
from clbench.models.features import encoder_digest

#: registered name -> the user's module (held by the strategy that uses it)
_MODELS: "weakref.WeakValueDictionary[str, nn.Module]" = weakref.WeakValueDictionary()
_BUILT: set[str] = set()  # names whose module was handed out once already


def feature_width(module: nn.Module, input_shape: tuple[int, ...], *, probe: bool = False) -> int:
    """``module.out_features`` where it says (unless ``probe``), else the width of its
    output for one zero input of ``input_shape`` (refused, in the user's terms, if it fails)."""
    width = getattr(module, "out_features", None)
    if isinstance(width, int) and not probe:
        return width
    ref = next(iter(module.parameters()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    modes = [(m, m.training) for m in module.modules()]
    try:
        with torch.no_grad():
            out = module.eval()(torch.zeros(1, *input_shape, device=device))
    except Exception as err:  # noqa: BLE001 - said in the user's terms
        raise BridgeError(f"model={type(module).__name__} does not take inputs of shape (batch, "
                         f"{', '.join(map(str, input_shape))}): {type(err).__name__}: {err}") from err
    finally:
        for m, training in modes:
            m.training = training
    if not isinstance(out, torch.Tensor):
        raise BridgeError(f"model={type(module).__name__} returns {type(out).__name__}, not a tensor of features")
    return int(out.flatten(1).shape[1])


def _build(config: BackboneConfig, input_shape: tuple[int, ...]) -> Backbone:
    module = _MODELS.get(config.name)
    if module is None:
        raise BridgeError(f"backbone {config.name!r} was a module given to make_strategy(model=...) that is gone")
    source = f"the user's module {type(module).__qualname__} (make_strategy(model=...))"
    if config.weights != "none":  # a strategy loading weights of its own into the architecture
        state, where = load_weights_file(config.weights)
        module = copy.deepcopy(module)
        module.load_state_dict(state)
        source = f"{source}, weights {where}"
    elif config.name in _BUILT:  # another instance of the architecture (e.g. a second expert)
        module = copy.deepcopy(module)
        for m in module.modules():
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
        source = f"a fresh copy of {source}"
    _BUILT.add(config.name)
    width = feature_width(module, input_shape)
    return Backbone(InputAdapter(input_shape[0], None, "none"), module, width, source)


def user_backbone(module: nn.Module, input_shape: tuple[int, ...]) -> BackboneConfig:
    """Register ``module`` as a backbone and return the config that selects it."""
    if not isinstance(module, nn.Module):
        raise BridgeTypeError(f"model= must be a torch.nn.Module mapping inputs to features, got {type(module).__name__}")
    feature_width(module, input_shape, probe=True)  # refused now if it cannot take the benchmark's inputs
    name = f"_model:{type(module).__name__}-{encoder_digest(module)[:12]}"
    BACKBONES.register(name, _build)
    _MODELS[name] = module
    _BUILT.discard(name)
    return BackboneConfig(name=name)


def was_built(config: Optional[BackboneConfig]) -> bool:
    """Whether a strategy built the backbone ``config`` names (i.e. it uses the module)."""
    return config is not None and config.name in _BUILT
