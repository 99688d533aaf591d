"""What is this file? Fingerprint keys and shapes -> a kind, before anything is built.

Kinds nodeflow loads: ``sd1``, ``sd1-inpaint``, ``sd2``, ``sd2-v``, ``sd2-inpaint``, ``sd2-unclip``,
``sd2-unclip-v``, ``sdxl``, ``sdxl-inpaint``, ``sdxl-refiner``; other files: ``vae``, ``controlnet``,
``t2i-adapter``, ``lora``, ``unknown``; and the diffusion families nodeflow does not run, named so
the loaders can say which (``FAMILY_MARKERS``, ``sd2-x4-upscaler``, ``sdxl-edm``, ``svd``).

How the U-Net families are told apart (as ComfyUI's comfy/model_detection.py and
supported_models.py do, from the U-Net's shapes and the text encoder's keys):

- the ADM input ``label_emb``: SDXL (2816 wide; the refiner 2560) and SD2 unCLIP (context 1024);
- the cross-attention context width: 768 SD1, 1024 SD2, 2048 SDXL, 1280 the SDXL refiner; and the
  text encoder's prefix (``cond_stage_model.transformer.`` SD1, ``cond_stage_model.model.`` SD2,
  ``conditioner.embedders.`` SDXL: ``0.transformer`` + ``1.model`` base, ``0.model`` the refiner
  (with its ADM input or a 1280-wide context) or else an SD2 saved in the sgm layout);
- 9 input channels: inpainting;
- linear ``proj_in`` layers (2-D weights) without an ADM input: SD2 (SD1's are 1x1 convolutions).
  Real files already tell by their context width; this is for U-Net-only files of other sizes
  (UNETLoader), where no text-encoder key says which.

SD2's v-prediction models have the same shapes as its epsilon ones. ``sd2-v`` (``sd2-unclip-v``) is reported when the
file says so with a ``v_pred`` key (as some trainers write it), or by ComfyUI's guess for SD2
(supported_models.SD20.model_type): a 4-channel SD2 U-Net whose
``output_blocks.11.1.transformer_blocks.0.norm1.bias`` has a (population) standard deviation
above 0.09 is SD2-768-v. SDXL's ``v_pred`` / ``ztsnr`` markers are read by the loader
(nodeflow.loading.families).
"""

from __future__ import annotations

import torch

UNET = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD2_TEXT = "cond_stage_model.model."
SDXL_TEXT = "conditioner.embedders."
SD2_V_KEY = UNET + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
SD2_V_STD = 0.09
#: SD2's x4 upscaler (stable-diffusion-x4-upscaler): a U-Net on 4 latent + 3 low-resolution image
#: channels with a noise-level embedding ``label_emb.weight`` (ComfyUI's supported_models.SD_X4Upscaler).
#: nodeflow does not run it (kind ``sd2-x4-upscaler``).
X4_UPSCALER_CHANNELS = 7

#: Diffusion families nodeflow does not run: (kind, marker keys, first match wins), each marker
#: looked for bare and under the prefixes ComfyUI's model detection uses. Markers as in
#: comfy/model_detection.py (detect_unet_config) and diffusers' single_file_utils.CHECKPOINT_KEY_NAMES.
FAMILY_MARKERS = (
    ("sd3", ("joint_blocks.0.context_block.attn.qkv.weight", "joint_blocks.0.context_block.adaLN_modulation.1.bias")),
    ("stable-cascade", ("clf.1.weight", "clip_txt_mapper.weight", "down_blocks.0.0.channelwise.0.weight",
                        "down_blocks.1.0.channelwise.0.weight")),
    ("stable-audio", ("transformer.rotary_pos_emb.inv_freq",)),
    ("auraflow", ("double_layers.0.attn.w1q.weight",)),
    ("hunyuan-dit", ("mlp_t5.0.weight",)),
    ("hunyuan-video", ("txt_in.individual_token_refiner.blocks.0.norm1.weight",)),
    ("chroma", ("distilled_guidance_layer.in_proj.bias",)),
    ("flux2", ("single_stream_modulation.lin.weight",)),
    ("flux", ("double_blocks.0.img_attn.norm.key_norm.scale", "double_blocks.0.img_attn.qkv.weight")),
    ("mochi", ("t5_yproj.weight", "blocks.0.attn.qkv_x.weight")),
    ("pixart", ("t_block.1.weight",)),
    ("ltxv", ("adaln_single.emb.timestep_embedder.linear_1.bias", "patchify_proj.weight")),
    ("wan", ("head.modulation",)),
    ("hidream", ("double_stream_blocks.0.block.adaLN_modulation.1.bias",)),
    ("lumina2", ("cap_embedder.0.weight",)),
    ("cosmos", ("net.x_embedder.proj.1.weight",)),
)
MARKER_PREFIXES = ("", UNET, "model.model.", "model.")


def detect_kind(sd: dict[str, torch.Tensor]) -> str:
    """The kind of a state dict (see the module docstring)."""
    keys = sd.keys()
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) or ".lora_down." in k
           or ".lora_A." in k for k in keys):
        return "lora"
    family = _other_family(sd)
    if family:
        return family
    conv_in = sd.get(UNET + "input_blocks.0.0.weight")
    if conv_in is not None:
        return _unet_family(sd, conv_in.shape[1])
    if _is_controlnet(sd):
        return "controlnet"
    if any(k.startswith(("adapter.", "body.0.")) for k in keys) or "conv_in.weight" in sd and "body.0.block1.weight" in sd:
        return "t2i-adapter"
    plain = {k.removeprefix(VAE_PREFIX) for k in keys}
    if "encoder.conv_in.weight" in plain and "decoder.conv_out.weight" in plain:
        return "vae"
    return "unknown"


def _other_family(sd: dict[str, torch.Tensor]) -> str | None:
    for kind, markers in FAMILY_MARKERS:
        if any(prefix + marker in sd for marker in markers for prefix in MARKER_PREFIXES):
            return kind
    return None


def _unet_family(sd: dict[str, torch.Tensor], in_channels: int) -> str:
    keys = sd.keys()
    if any(".time_stack." in k or ".time_mix_blocks." in k or ".time_mixer." in k for k in keys if k.startswith(UNET)):
        return "svd"  # a video U-Net (Stable Video Diffusion): temporal layers in its blocks
    if in_channels == X4_UPSCALER_CHANNELS and UNET + "label_emb.weight" in sd:
        return "sd2-x4-upscaler"
    context = _context_dim(sd)
    adm = UNET + "label_emb.0.0.weight" in sd
    sd2_text = any(k.startswith(SD2_TEXT) for k in keys)
    xl_base_text = any(k.startswith(SDXL_TEXT + "1.model.") for k in keys)
    g_only_text = any(k.startswith(SDXL_TEXT + "0.model.") for k in keys)
    if adm and (context == 1024 or sd2_text):  # SD2.1 unCLIP-L / -H (the real ones predict v)
        return "sd2-unclip-v" if "v_pred" in sd or _sd2_v_guess(sd) else "sd2-unclip"
    if adm or xl_base_text or (g_only_text and context == 1280):
        if "edm_mean" in sd or "edm_vpred.sigma_max" in sd:
            return "sdxl-edm"  # Playground v2.5, EDM v-prediction fine-tunes: continuous-time sampling
        if g_only_text and not xl_base_text or context == 1280:
            return "sdxl-refiner"
        return "sdxl-inpaint" if in_channels == 9 else "sdxl"
    inpaint = in_channels == 9
    if sd2_text or g_only_text or context == 1024 or _linear_projections(sd):
        if inpaint:
            return "sd2-inpaint"
        return "sd2-v" if "v_pred" in sd or _sd2_v_guess(sd) else "sd2"
    return "sd1-inpaint" if inpaint else "sd1"


def _sd2_v_guess(sd: dict[str, torch.Tensor]) -> bool:
    """ComfyUI's guess that a 4-channel SD2 U-Net predicts v (see the module docstring)."""
    bias = sd.get(SD2_V_KEY)
    if bias is None or bias.numel() < 2 or bias.is_meta:  # shapes only (meta): no statistic to read
        return False
    return float(bias.float().std(unbiased=False)) > SD2_V_STD


def _linear_projections(sd: dict[str, torch.Tensor]) -> bool:
    proj_in = next((v for k, v in sd.items() if k.startswith(UNET) and k.endswith(".proj_in.weight")), None)
    return proj_in is not None and proj_in.ndim == 2


def _context_dim(sd: dict[str, torch.Tensor]) -> int | None:
    key = next((k for k in sd if k.startswith(UNET) and k.endswith("attn2.to_k.weight")), None)
    return sd[key].shape[1] if key else None


def _is_controlnet(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("control_model.zero_convs.", "zero_convs.")) for k in sd) or \
        "controlnet_cond_embedding.conv_in.weight" in sd


def describe_keys(sd: dict[str, torch.Tensor], count: int = 5) -> str:
    """A few keys for an error message."""
    keys = sorted(sd)[:count]
    return ", ".join(keys) + (" ..." if len(sd) > count else "") if keys else "(no tensors)"
