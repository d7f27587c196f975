"""Models: backbones (a registry, ``register_backbone``), ViTs, frozen-encoder features
cached on disk, and supervised pretraining of a trunk on auxiliary data (offline)."""
from clbench.models import backbones, vit  # noqa: F401  (vit registers vit_b16 and vit_small)
from clbench.models.backbones import BACKBONE_PRESETS, BackboneConfig, create_backbone, register_backbone

__all__ = ["BACKBONE_PRESETS", "BackboneConfig", "create_backbone", "register_backbone"]
