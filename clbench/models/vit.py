"""Vision Transformers (timm) as backbones with access to their tokens: ``vit_b16``
(MULTI-LANE's ViT-B/16, weights from the Hugging Face cache or a file) and ``vit_small``
(a small ViT for the offline 28/56-px scenarios)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from clbench.models.backbones import (Backbone, BackboneConfig, BackboneWeightsError, InputAdapter, load_weights_file,
                                      register_backbone)


class ViTBackbone(Backbone):
    """A timm VisionTransformer without its classifier, with access to its tokens:
    ``embed(x)`` gives the token sequence entering block 0 (CLS first, positions added),
    ``vit.blocks[k]`` each block (``norm1``, ``attn``, ``ls1``, ``norm2``, ``mlp``,
    ``ls2``), ``vit.norm`` the final LayerNorm; ``forward`` is the CLS feature."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.trunk
        x = vit.patch_embed(self.adapter(x))
        x = vit._pos_embed(x)
        return vit.norm_pre(x)

    def block_tokens(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The tokens after each block (before the final norm)."""
        out, t = [], self.embed(x)
        for block in self.trunk.blocks:
            t = block(t)
            out.append(t)
        return out

    @property
    def vit(self) -> nn.Module:
        return self.trunk


VIT_B16_TIMM = "vit_base_patch16_224.augreg_in21k_ft_in1k"


def _vit_state_from_file(path: str) -> tuple[dict, str]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        p = Path(path).expanduser()
        if not p.is_file():
            raise BackboneWeightsError(f"weights file {str(p)!r} does not exist; pass backbone.weights=none for a random init")
        return load_file(str(p)), f"file:{p} sha256:{hashlib.sha256(p.read_bytes()).hexdigest()[:12]}"
    return load_weights_file(path)


def _hub_cached_file(repo: str) -> Optional[str]:
    """A weights file of ``repo`` already in the Hugging Face cache, or None (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on it
        return None
    for name in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return found
    return None


def _vit_b16(config: BackboneConfig, input_shape: tuple[int, ...]) -> Backbone:
    """ViT-B/16 (timm ``vit_base_patch16_224.augreg_in21k_ft_in1k``, MULTI-LANE's backbone):
    weights ``hub`` (timm's Hugging Face cache, offline), a file, or ``none``."""
    import timm

    model = timm.create_model(VIT_B16_TIMM, pretrained=False, num_classes=0)
    source = "none (random init)"
    if config.weights == "hub":
        path = _hub_cached_file(f"timm/{VIT_B16_TIMM}")
        if path is None:
            raise BackboneWeightsError(
                f"timm weights {VIT_B16_TIMM} are not in the Hugging Face cache (never downloaded at run time). "
                f"Warm the cache where there is network (timm.create_model('{VIT_B16_TIMM}', pretrained=True)) and "
                f"copy ~/.cache/huggingface here, or pass backbone.weights=/path/to/model.safetensors")
        state, source = _vit_state_from_file(path)
        source = f"timm:{VIT_B16_TIMM} (hub cache, {source})"
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
    elif config.weights != "none":
        state, source = _vit_state_from_file(config.weights)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
    return ViTBackbone(InputAdapter(3, config.input_size, config.normalize), model, model.num_features, source)


def _vit_small(config: BackboneConfig, input_shape: tuple[int, ...]) -> Backbone:
    """A small ViT for the offline 28/56-px scenarios: patch 4, width ``config.width * 6``
    (192 by default: ViT-Tiny's), 6 blocks of 3 heads; random init or a file."""
    from timm.models.vision_transformer import VisionTransformer

    c, h = input_shape[0], input_shape[-1]
    size = config.input_size or h
    width = config.width * 6
    model = VisionTransformer(img_size=size, patch_size=4, in_chans=c, embed_dim=width, depth=6, num_heads=3,
                              num_classes=0)
    source = "none (random init)"
    if config.weights != "none":
        state, source = load_weights_file(config.weights)
        model.load_state_dict(state)
    return ViTBackbone(InputAdapter(c, config.input_size, config.normalize), model, width, source)


register_backbone("vit_b16", _vit_b16, BackboneConfig(name="vit_b16", weights="hub", input_size=224, normalize="half"))
register_backbone("vit_small", _vit_small, BackboneConfig(name="vit_small", weights="none", normalize="none"))
