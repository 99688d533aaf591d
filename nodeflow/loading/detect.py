"""What is this file? Fingerprint keys and shapes -> a kind, before anything is built.

Kinds: ``sd1``, ``sd1-inpaint``, ``sd2``, ``sd2-v``, ``sd2-inpaint``, ``sdxl``, ``sdxl-refiner``,
``vae``, ``controlnet``, ``t2i-adapter``, ``lora``, ``unknown``. SD2's v-prediction models have
the same shapes as its epsilon ones: ``sd2-v`` is reported only when the file says so with a
``v_pred`` key (as some trainers write it); otherwise ``sd2``. Only the families nodeflow can run are accepted by the loaders; others
get a clear message.
"""

from __future__ import annotations

import torch

UNET = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD2_TEXT = "cond_stage_model.model."
SDXL_TEXT = "conditioner.embedders."


def detect_kind(sd: dict[str, torch.Tensor]) -> str:
    """The kind of a state dict (see the module docstring)."""
    keys = sd.keys()
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_")) or ".lora_down." in k or ".lora_A." in k
           for k in keys):
        return "lora"
    conv_in = sd.get(UNET + "input_blocks.0.0.weight")
    if conv_in is not None:
        if UNET + "label_emb.0.0.weight" in sd or any(k.startswith(SDXL_TEXT) for k in keys):
            return "sdxl-refiner" if any(k.startswith(SDXL_TEXT + "0.model.") for k in keys) else "sdxl"
        inpaint = conv_in.shape[1] == 9
        if any(k.startswith(SD2_TEXT) for k in keys) or _context_dim(sd) == 1024:
            return "sd2-inpaint" if inpaint else "sd2-v" if "v_pred" in sd else "sd2"
        return "sd1-inpaint" if inpaint else "sd1"
    if _is_controlnet(sd):
        return "controlnet"
    if any(k.startswith(("adapter.", "body.0.")) for k in keys) or "conv_in.weight" in sd and "body.0.block1.weight" in sd:
        return "t2i-adapter"
    plain = {k.removeprefix(VAE_PREFIX) for k in keys}
    if "encoder.conv_in.weight" in plain and "decoder.conv_out.weight" in plain:
        return "vae"
    return "unknown"


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
