"""Diffusers-format state dicts, converted to the original single-file layout (key conversion
only: the folders are read by ``nodeflow.loading.files``).

A diffusers folder (what ``save_pretrained`` writes) holds one sub-folder per part::

    unet/config.json          unet/diffusion_pytorch_model.safetensors
    vae/config.json           vae/diffusion_pytorch_model.safetensors
    text_encoder/config.json  text_encoder/model.safetensors

Its keys are renamed here into the layout of the original CompVis checkpoints
(``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.*``), so one
loader serves both. The renaming is a table of block prefixes computed from the keys present
(number of levels, residual blocks per level, which levels have attention), plus renames inside
residual and attention blocks. Facts from diffusers' ``convert_diffusers_to_original_stable_diffusion``;
the code is ours. A key the table does not cover is an error listing it (never silently dropped).

What shapes cannot say is read from the parts' ``config.json`` into the same metadata keys that
single files use: ``nodeflow.unet.num_heads`` (diffusers' SD1 ``attention_head_dim`` is, despite
its name, the number of heads) and ``nodeflow.vae.scaling_factor``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."

UNET_RESNET_RENAMES = (("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."),
                       ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."),
                       ("time_emb_proj.", "emb_layers.1."), ("conv_shortcut.", "skip_connection."))
VAE_RESNET_RENAMES = (("conv_shortcut.", "nin_shortcut."),)
VAE_ATTENTION_RENAMES = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
                         ("to_out.0.", "proj_out."), ("query.", "q."), ("key.", "k."),
                         ("value.", "v."), ("proj_attn.", "proj_out."))


def part_metadata(part: str, config: dict) -> dict[str, str]:
    if part == "unet":
        heads = config.get("num_attention_heads") or config.get("attention_head_dim")
        return {"nodeflow.unet.num_heads": str(heads)} if isinstance(heads, int) else {}
    if part == "vae" and isinstance(config.get("scaling_factor"), (int, float)):
        return {"nodeflow.vae.scaling_factor": str(config["scaling_factor"])}
    return {}


def _indices(keys, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over ``keys``."""
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := regex.match(k))})


def _rename(sd: dict[str, torch.Tensor], prefixes: list[tuple[str, str, tuple]], where: Path,
            what: str) -> dict[str, torch.Tensor]:
    """Rename every key by its longest matching diffusers prefix, then the inner renames."""
    prefixes = sorted(prefixes, key=lambda p: -len(p[0]))
    out, unmapped = {}, []
    for key, value in sd.items():
        match = next(((src, dst, inner) for src, dst, inner in prefixes if key.startswith(src)), None)
        if match is None:
            if not key.endswith("position_ids"):
                unmapped.append(key)
            continue
        src, dst, inner = match
        rest = key[len(src):]
        for old, new in inner:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        out[dst + rest] = value
    if unmapped:
        shown = ", ".join(sorted(unmapped)[:8]) + (f" ... ({len(unmapped)} in all)" if len(unmapped) > 8 else "")
        raise ModelFileError(f"{where}: {what} keys nodeflow cannot map to the original layout: {shown}")
    return out


def unet_to_original(sd: dict[str, torch.Tensor], where: Path = Path("unet")) -> dict[str, torch.Tensor]:
    """UNet2DConditionModel keys -> original U-Net keys (without ``model.diffusion_model.``).

    Original numbering: ``input_blocks.0`` is conv_in, then per level ``N`` residual blocks
    (each optionally followed by a transformer at index 1) and a downsampler; ``output_blocks``
    run from the deepest level with ``N + 1`` blocks each, the upsampler last in its block.
    """
    levels = len(_indices(sd, r"down_blocks\.(\d+)\."))
    per_level = len(_indices(sd, r"down_blocks\.0\.resnets\.(\d+)\."))
    if not levels or not per_level:
        raise ModelFileError(f"{where}: not a diffusers UNet2DConditionModel (no down_blocks.*.resnets)")
    r = UNET_RESNET_RENAMES
    table = [("time_embedding.linear_1.", "time_embed.0.", ()), ("time_embedding.linear_2.", "time_embed.2.", ()),
             # SDXL's ADM input (diffusers' "text_time" addition embedding)
             ("add_embedding.linear_1.", "label_emb.0.0.", ()), ("add_embedding.linear_2.", "label_emb.0.2.", ()),
             ("conv_in.", "input_blocks.0.0.", ()), ("conv_norm_out.", "out.0.", ()), ("conv_out.", "out.2.", ())]
    for level in range(levels):
        for j in range(per_level):
            index = 1 + level * (per_level + 1) + j
            table += [(f"down_blocks.{level}.resnets.{j}.", f"input_blocks.{index}.0.", r),
                      (f"down_blocks.{level}.attentions.{j}.", f"input_blocks.{index}.1.", ())]
        table.append((f"down_blocks.{level}.downsamplers.0.conv.", f"input_blocks.{(level + 1) * (per_level + 1)}.0.op.", ()))
        has_attention = any(k.startswith(f"up_blocks.{level}.attentions.") for k in sd)
        for j in range(per_level + 1):
            index = level * (per_level + 1) + j
            table += [(f"up_blocks.{level}.resnets.{j}.", f"output_blocks.{index}.0.", r),
                      (f"up_blocks.{level}.attentions.{j}.", f"output_blocks.{index}.1.", ())]
        last = level * (per_level + 1) + per_level
        table.append((f"up_blocks.{level}.upsamplers.0.", f"output_blocks.{last}.{2 if has_attention else 1}.", ()))
    middle_attention = any(k.startswith("mid_block.attentions.0.") for k in sd)
    table += [("mid_block.resnets.0.", "middle_block.0.", r), ("mid_block.attentions.0.", "middle_block.1.", ()),
              ("mid_block.resnets.1.", f"middle_block.{2 if middle_attention else 1}.", r)]
    return _rename(sd, table, where, "U-Net")


def vae_to_original(sd: dict[str, torch.Tensor], where: Path = Path("vae")) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL keys -> original VAE keys (without ``first_stage_model.``).

    The decoder's ``up_blocks`` run deepest first, the original ``up`` list shallowest first;
    attention projections are linear in diffusers and 1x1 convolutions in the original.
    """
    levels = len(_indices(sd, r"decoder\.up_blocks\.(\d+)\."))
    if not levels:
        raise ModelFileError(f"{where}: not a diffusers AutoencoderKL (no decoder.up_blocks)")
    res, attn = VAE_RESNET_RENAMES, VAE_ATTENTION_RENAMES
    table = [("quant_conv.", "quant_conv.", ()), ("post_quant_conv.", "post_quant_conv.", ())]
    for side in ("encoder", "decoder"):
        table += [(f"{side}.conv_in.", f"{side}.conv_in.", ()), (f"{side}.conv_out.", f"{side}.conv_out.", ()),
                  (f"{side}.conv_norm_out.", f"{side}.norm_out.", ()),
                  (f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.", attn)]
        table += [(f"{side}.mid_block.resnets.{k}.", f"{side}.mid.block_{k + 1}.", res) for k in range(2)]
    for level in range(levels):
        blocks = _indices(sd, rf"(?:en|de)coder\.(?:down|up)_blocks\.{level}\.resnets\.(\d+)\.")
        for j in blocks:
            table += [(f"encoder.down_blocks.{level}.resnets.{j}.", f"encoder.down.{level}.block.{j}.", res),
                      (f"decoder.up_blocks.{level}.resnets.{j}.", f"decoder.up.{levels - 1 - level}.block.{j}.", res)]
        table += [(f"encoder.down_blocks.{level}.downsamplers.0.", f"encoder.down.{level}.downsample.", ()),
                  (f"decoder.up_blocks.{level}.upsamplers.0.", f"decoder.up.{levels - 1 - level}.upsample.", ())]
    out = _rename(sd, table, where, "VAE")
    for key, value in out.items():
        if ".mid.attn_1." in key and value.ndim == 2:  # q, k, v, proj_out weights
            out[key] = value[:, :, None, None]  # linear (C, C) -> 1x1 conv (C, C, 1, 1)
    return out


def text_encoder_to_original(sd: dict[str, torch.Tensor], where: Path = Path("text_encoder")) -> dict[str, torch.Tensor]:
    """transformers CLIPTextModel keys, as the original has them after ``cond_stage_model.transformer.``.

    transformers 5 saves them without the ``text_model.`` segment; it is added back.
    """
    if not any(k.startswith(("text_model.embeddings.", "embeddings.")) for k in sd):
        raise ModelFileError(f"{where}: not a transformers CLIPTextModel (no embeddings.* keys)")
    return {(k if k.startswith("text_model.") else "text_model." + k): v
            for k, v in sd.items() if not k.endswith("position_ids")}


# ----- ControlNets ---------------------------------------------------------------------------
# A diffusers ControlNetModel is the U-Net's encoder (time_embedding, SDXL's add_embedding, conv_in,
# down_blocks, mid_block: renamed by unet_to_original) plus its own parts, renamed by the table below.

CONTROLNET_HINT_KEY = "controlnet_cond_embedding.conv_in.weight"
CONTROLNET_ENCODER_PREFIXES = ("time_embedding.", "add_embedding.", "conv_in.", "down_blocks.", "mid_block.")


def is_diffusers_controlnet(sd: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict has diffusers' ControlNetModel key layout."""
    return CONTROLNET_HINT_KEY in sd


def controlnet_metadata(config: dict, where: Path) -> dict[str, str]:
    """Heads from a ControlNetModel config.json, as the metadata keys single files use; options
    nodeflow's ControlNet does not implement are refused rather than silently ignored."""
    if config.get("global_pool_conditions"):
        raise ModelFileError(f"{where}: a ControlNet with global_pool_conditions (shuffle-style); "
                             "nodeflow does not support those yet")
    if config.get("controlnet_conditioning_channel_order", "rgb") != "rgb":
        raise ModelFileError(f"{where}: a ControlNet reading its control image as "
                             f"{config['controlnet_conditioning_channel_order']}; nodeflow supports rgb only")
    # diffusers' attention_head_dim is, despite its name, the number of heads (num_attention_heads wins)
    heads = config.get("num_attention_heads") or config.get("attention_head_dim")
    if isinstance(heads, list) and len(set(heads)) == 1:
        heads = heads[0]
    if isinstance(heads, int):
        return {"nodeflow.unet.num_heads": str(heads)}
    widths = config.get("block_out_channels")
    if isinstance(heads, list) and isinstance(widths, list) and len(widths) == len(heads):
        per_head = {width // count for width, count in zip(widths, heads)}
        if len(per_head) == 1:  # SD2-style: the same channels per head at every level
            return {"nodeflow.unet.head_channels": str(per_head.pop())}
    return {}


def controlnet_to_original(sd: dict[str, torch.Tensor], where: Path = Path("controlnet")) -> dict[str, torch.Tensor]:
    """diffusers ControlNetModel keys -> original ControlNet keys (without ``control_model.``).

    The hint encoder's ``conv_in``, ``blocks.k`` and ``conv_out`` are ``input_hint_block``
    0, 2(k+1) and the last (odd indices are the SiLUs of the original nn.Sequential);
    ``controlnet_down_blocks.i`` is ``zero_convs.i.0`` and ``controlnet_mid_block`` is
    ``middle_block_out.0``. Any other key outside the encoder is an error listing it.
    """
    encoder = {k: v for k, v in sd.items() if k.startswith(CONTROLNET_ENCODER_PREFIXES)}
    own = {k: v for k, v in sd.items() if k not in encoder}
    if CONTROLNET_HINT_KEY not in own or not encoder:
        raise ModelFileError(f"{where}: not a diffusers ControlNetModel (needs controlnet_cond_embedding.* "
                             "and the U-Net encoder's down_blocks.*)")
    blocks = _indices(own, r"controlnet_cond_embedding\.blocks\.(\d+)\.")
    if blocks != list(range(len(blocks))):
        raise ModelFileError(f"{where}: the hint encoder's blocks are not numbered 0..{len(blocks) - 1}: {blocks}")
    table = [("controlnet_cond_embedding.conv_in.", "input_hint_block.0.", ()),
             ("controlnet_cond_embedding.conv_out.", f"input_hint_block.{2 * (len(blocks) + 1)}.", ()),
             ("controlnet_mid_block.", "middle_block_out.0.", ())]
    table += [(f"controlnet_cond_embedding.blocks.{k}.", f"input_hint_block.{2 * (k + 1)}.", ()) for k in blocks]
    table += [(f"controlnet_down_blocks.{i}.", f"zero_convs.{i}.0.", ())
              for i in _indices(own, r"controlnet_down_blocks\.(\d+)\.")]
    return {**_rename(own, table, where, "ControlNet"), **unet_to_original(encoder, where)}
