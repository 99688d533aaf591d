"""Scaled-down SD2.x and SDXL single-file checkpoints with random weights, in the original layout,
written test-side (independently of nodeflow's readers): transformers' CLIP text models, saved
with OpenCLIP's key names for SD2's ViT-H and SDXL's bigG (``open_clip_layout``), and our U-Net
and VAE (whose key names are the original's by construction).

Sizes: CLIP-L 64 wide (1 head of 64), 3 layers, quick_gelu, as SD1's; CLIP-G 128 wide (2 heads),
4 layers, GELU, projection 96 (not square, so a transposed text_projection cannot pass); SD2's
ViT-H 64 wide, 24 layers (diffusers' SD2 reader drops resblocks.23 by name: a real ViT-H has 24),
projection 48. U-Nets with 64 channels per head at every level, as SD2/SDXL.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from nodeflow.models.unet import UNetConfig, UNetModel
from nodeflow.models.vae import AutoencoderKL, VAEConfig

TINY_L = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, hidden_act="quick_gelu")
TINY_G = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, hidden_act="gelu", projection_dim=96)
TINY_H = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=24, hidden_act="gelu", projection_dim=48)
# the real towers (shapes only: built on the meta device)
VIT_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, hidden_act="quick_gelu")
VIT_H = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, hidden_act="gelu", projection_dim=1024)
VIT_BIGG = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, hidden_act="gelu", projection_dim=1280)

TINY_VAE = VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1)
ADM_SIZES = 256  # width of each size embedding in SDXL's ADM vector


def clip_config(sizes: dict) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                          pad_token_id=1, num_attention_heads=sizes["hidden_size"] // 64, **sizes)


def tiny_unet(family: str, in_channels: int = 4) -> UNetConfig:
    """SD2-, SDXL- and refiner-like U-Nets: linear projections, 64 channels per head, the ADM input
    as wide as pooled + size embeddings (6 for SDXL, 5 for the refiner)."""
    common = dict(in_channels=in_channels, out_channels=4, model_channels=64, channel_mult=(1, 2), num_res_blocks=1,
                  num_heads=None, head_channels=64, use_linear_in_transformer=True)
    if family == "sd2":
        return UNetConfig(**common, transformer_depth=(1, 1), middle_transformer_depth=1,
                          context_dim=TINY_H["hidden_size"])
    if family == "sdxl":  # like SDXL's (0, 2, 10) with the middle as deep as the last level
        return UNetConfig(**common, transformer_depth=(0, 2), middle_transformer_depth=2,
                          context_dim=TINY_L["hidden_size"] + TINY_G["hidden_size"],
                          adm_in_channels=TINY_G["projection_dim"] + 6 * ADM_SIZES)
    return UNetConfig(**common, transformer_depth=(0, 1), middle_transformer_depth=1,
                      context_dim=TINY_G["hidden_size"], adm_in_channels=TINY_G["projection_dim"] + 5 * ADM_SIZES)


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial random weights everywhere: weights +-1/sqrt(fan_in), biases +-0.1, norm scales
    1 +- 0.1 (so skipping or adding a LayerNorm shows), embeddings N(0, 0.5)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            norm = isinstance(sub, (torch.nn.LayerNorm, torch.nn.GroupNorm))
            for name, parameter in sub.named_parameters(recurse=False):
                noise = torch.rand(parameter.shape, generator=generator) * 2 - 1
                if isinstance(sub, torch.nn.Embedding):
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
                elif norm and name == "weight":
                    parameter.copy_(1 + 0.1 * noise)
                elif parameter.ndim >= 2:
                    parameter.copy_(noise * parameter[0].numel() ** -0.5)
                else:
                    parameter.copy_(0.1 * noise)
    return module.eval()


def random_text_model(sizes: dict, seed: int, projection: bool | None = None):
    """A transformers CLIPTextModelWithProjection (OpenCLIP towers) or CLIPTextModel (CLIP-L)."""
    projection = "projection_dim" in sizes if projection is None else projection
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return randomize(cls(clip_config(sizes)), seed)


def open_clip_layout(model: CLIPTextModelWithProjection) -> dict[str, torch.Tensor]:
    """The model's tensors under OpenCLIP's names: fused q/k/v (``attn.in_proj_*``, rows q|k|v),
    ``c_fc``/``c_proj``, ``ln_1``/``ln_2``/``ln_final``, ``positional_embedding`` and
    ``text_projection`` stored (D, P) for x @ P; plus ``logit_scale`` as real files carry it."""
    sd = {k.removeprefix("text_model."): v for k, v in model.state_dict().items()}
    out = {"token_embedding.weight": sd["embeddings.token_embedding.weight"],
           "positional_embedding": sd["embeddings.position_embedding.weight"],
           "ln_final.weight": sd["final_layer_norm.weight"], "ln_final.bias": sd["final_layer_norm.bias"],
           "text_projection": sd["text_projection.weight"].t().contiguous(),  # (P, D) Linear -> (D, P)
           "logit_scale": torch.tensor(4.6052)}
    for i in range(model.config.num_hidden_layers):
        ours, theirs = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{theirs}attn.in_proj_{kind}"] = torch.cat(
                [sd[f"{ours}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])  # (3D, D) / (3D,)
            for original, hf in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                                 ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                out[f"{theirs}{original}.{kind}"] = sd[f"{ours}{hf}.{kind}"]
    return out


def transformers_layout(model: CLIPTextModel) -> dict[str, torch.Tensor]:
    """CLIP-L's keys as SD1 and SDXL files store them (with ``text_model.``; position_ids as many carry)."""
    sd = {("" if k.startswith("text_model.") else "text_model.") + k: v for k, v in model.state_dict().items()}
    return sd | {"text_model.embeddings.position_ids": torch.arange(77)[None]}


def prefixed(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


def family_state_dict(family: str, seed: int = 0, in_channels: int = 4, markers: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(the checkpoint's tensors, the source models by part) for ``family`` in sd2, sdxl, sdxl-refiner."""
    torch.manual_seed(seed)
    unet = randomize(UNetModel(tiny_unet(family, in_channels)), seed + 1)
    vae = randomize(AutoencoderKL(TINY_VAE), seed + 2)
    sources = {"unet": unet, "vae": vae}
    sd = prefixed("model.diffusion_model.", unet.state_dict()) | prefixed("first_stage_model.", vae.state_dict())
    if family == "sd2":
        sources["clip_h"] = random_text_model(TINY_H, seed + 3)
        sd |= prefixed("cond_stage_model.model.", open_clip_layout(sources["clip_h"]))
    elif family == "sdxl":
        sources["clip_l"] = random_text_model(TINY_L, seed + 4)
        sources["clip_g"] = random_text_model(TINY_G, seed + 5)
        sd |= prefixed("conditioner.embedders.0.transformer.", transformers_layout(sources["clip_l"]))
        sd |= prefixed("conditioner.embedders.1.model.", open_clip_layout(sources["clip_g"]))
    else:
        sources["clip_g"] = random_text_model(TINY_G, seed + 5)
        sd |= prefixed("conditioner.embedders.0.model.", open_clip_layout(sources["clip_g"]))
    sd |= {marker: torch.tensor([]) for marker in markers}  # v_pred / ztsnr: empty tensors, as trainers write them
    return {k: v.contiguous() for k, v in sd.items()}, sources


def write_family_checkpoint(path: str | Path, family: str, seed: int = 0, in_channels: int = 4,
                            markers: tuple[str, ...] = ()) -> tuple[Path, dict]:
    """A float32 .safetensors single file of ``family_state_dict``; (path, source models)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd, sources = family_state_dict(family, seed, in_channels, markers)
    save_file(sd, str(path), metadata={"format": "pt"})
    return path, sources


def original_config(unet: UNetConfig, vae: VAEConfig, scale: float) -> dict:
    """The sgm/LDM config (what sd_xl_base.yaml or v2-inference.yaml hold) for these U-Net and VAE configs."""
    params = {"in_channels": unet.in_channels, "out_channels": unet.out_channels, "model_channels": unet.model_channels,
              "channel_mult": list(unet.channel_mult), "num_res_blocks": unet.num_res_blocks,
              "attention_resolutions": [2 ** level for level, depth in enumerate(unet.transformer_depth) if depth],
              "transformer_depth": _depth(unet), "num_head_channels": 64,
              "use_linear_in_transformer": True, "context_dim": unet.context_dim, "use_spatial_transformer": True}
    if unet.adm_in_channels:
        params |= {"num_classes": "sequential", "adm_in_channels": unet.adm_in_channels}
    ddconfig = {"double_z": True, "z_channels": vae.z_channels, "resolution": 256, "in_channels": vae.in_channels,
                "out_ch": vae.out_channels, "ch": vae.ch, "ch_mult": list(vae.ch_mult),
                "num_res_blocks": vae.num_res_blocks, "attn_resolutions": [], "dropout": 0.0}
    return {"model": {"params": {"scale_factor": scale, "network_config": {"params": params},
                                 "first_stage_config": {"params": {"embed_dim": vae.embed_dim, "ddconfig": ddconfig}}}}}


def _depth(unet: UNetConfig) -> int | list[int]:
    """As the yaml files write it: one number when every attention level has the same depth (SD2,
    the refiner: diffusers then also gives the middle block that depth), else per level (SDXL)."""
    depths = {d for d in unet.transformer_depth if d}
    return depths.pop() if len(depths) == 1 else list(unet.transformer_depth)
