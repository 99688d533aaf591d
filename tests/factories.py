"""Tiny random checkpoints in the original SD1.x single-file layout, for loading and end-to-end
tests. Configuration: U-Net 32 channels, levels (1, 2), one residual block, attention on the
first level and the middle, context 32; VAE 32 channels, 4 levels (8x); CLIP 2 layers of 32
with the real 49408-token vocabulary. Stored in fp16 (about 4 MB)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from nodeflow.models.unet import UNetConfig, UNetModel
from nodeflow.models.vae import AutoencoderKL, VAEConfig

TINY_UNET = UNetConfig(in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2),
                       num_res_blocks=1, transformer_depth=(1, 0), middle_transformer_depth=1,
                       context_dim=32, num_heads=8)
TINY_VAE = VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1)


def _randomize(module: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("weight") and ("norm" in name or "layer_norm" in name):
                parameter.fill_(1.0)
            else:
                parameter.copy_(torch.randn_like(parameter) * scale)
    return module


def tiny_state_dict(seed: int = 0, inpainting: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    unet_config = TINY_UNET if not inpainting else UNetConfig(**{**TINY_UNET.__dict__, "in_channels": 9})
    unet = _randomize(UNetModel(unet_config))
    vae = _randomize(AutoencoderKL(TINY_VAE), 0.1)
    clip = _randomize(CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=1, max_position_embeddings=77, hidden_act="quick_gelu")), 0.1)
    sd = {}
    for key, value in unet.state_dict().items():
        sd["model.diffusion_model." + key] = value
    for key, value in vae.state_dict().items():
        sd["first_stage_model." + key] = value
    for key, value in clip.state_dict().items():
        if key.endswith("position_ids"):
            continue
        key = key if key.startswith("text_model.") else "text_model." + key
        sd["cond_stage_model.transformer." + key] = value
    return {k: v.to(torch.float16).contiguous() for k, v in sd.items()}


def write_tiny_checkpoint(path: str | Path, seed: int = 0, inpainting: bool = False,
                          metadata: dict[str, str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tiny_state_dict(seed, inpainting), str(path), metadata=metadata or {"format": "pt"})
    return path


def write_tiny_controlnet(path: str | Path, seed: int = 0) -> Path:
    """A random ControlNet in the original layout that fits ``write_tiny_checkpoint``'s U-Net."""
    from nodeflow.models.controlnet import ControlNetConfig, ControlNetModel

    torch.manual_seed(seed)
    controlnet = _randomize(ControlNetModel(ControlNetConfig(TINY_UNET)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"control_model." + k: v.contiguous() for k, v in controlnet.state_dict().items()}, str(path))
    return path


def write_tiny_lora(path: str | Path, seed: int = 0, rank: int = 2) -> Path:
    """A random LoRA (kohya layout) for ``write_tiny_checkpoint``'s U-Net, on the layers the
    embedded model's example LoRA trains."""
    from nodeflow.training.train_lora import target_layers

    with torch.device("meta"):
        unet = UNetModel(TINY_UNET)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, layer in target_layers(unet).items():
        shape = layer.weight.shape
        key = "lora_unet_" + name.replace(".", "_")
        tensors[key + ".lora_down.weight"] = torch.randn((rank, *shape[1:]), generator=generator) * 0.01
        up = torch.randn((shape[0], rank), generator=generator) * 0.01
        tensors[key + ".lora_up.weight"] = up[..., None, None] if len(shape) == 4 else up
        tensors[key + ".alpha"] = torch.tensor(float(rank))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
