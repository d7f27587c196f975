"""What a plugin author writes against: one import for a strategy, a scenario or an add-on.

    from clbench.api import Strategy, StrategyConfig, StepStats, register_strategy, setting

- strategies: :class:`Strategy`, :class:`StrategyConfig`, :func:`register_strategy`;
- add-ons (composed onto any strategy): :class:`Addon`, :class:`AddonConfig`, :func:`register_addon`;
- scenarios: :class:`Scenario`, :class:`ScenarioConfig`, :func:`register_scenario`;
- what a learner is handed: :class:`LearnerView`, :class:`Batch`, :class:`ExperienceInfo`,
  :class:`ScenarioInfo`, and what it returns: :class:`StepStats`, :class:`Prediction`;
- replay memories (one storage policy each): :class:`ReservoirBuffer`,
  :class:`ClassBalancedBuffer`, :class:`PriorityBuffer`;
- data: :class:`TensorData`; extra data before the stream: :class:`AuxData`,
  :func:`register_aux_dataset`; config fields with help and range: :func:`setting`;
- backbones: ``clbench.models.register_backbone``.
"""
from clbench.api.addon import Addon, AddonConfig, register_addon
from clbench.api.auxdata import AuxData, register_aux_dataset
from clbench.api.buffers import ClassBalancedBuffer, PriorityBuffer, ReservoirBuffer
from clbench.api.data import TensorData
from clbench.api.scenario import Scenario, ScenarioConfig, register_scenario
from clbench.api.strategy import STRATEGIES, Strategy, StrategyConfig, register_strategy
from clbench.api.view import LearnerView
from clbench.fields import setting
from clbench.types import Batch, ExperienceInfo, Prediction, ScenarioInfo, StepStats

__all__ = ["Addon", "AddonConfig", "register_addon", "AuxData", "register_aux_dataset", "ClassBalancedBuffer",
           "PriorityBuffer", "ReservoirBuffer", "TensorData", "Scenario", "ScenarioConfig", "register_scenario",
           "STRATEGIES", "Strategy", "StrategyConfig", "register_strategy", "LearnerView", "setting", "Batch",
           "ExperienceInfo", "Prediction", "ScenarioInfo", "StepStats"]
