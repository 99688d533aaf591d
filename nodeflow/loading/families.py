"""What differs between the model families a checkpoint can hold (as ComfyUI's
comfy/supported_models.py sets them): where the text encoders' keys are, the U-Net's attention
heads, the latent scale, the CLIP socket value and the noise schedule's parameterisation.

=============  =======================================================  ===============  =======
family         text encoder keys (tower: prefix)                        U-Net heads      latent
=============  =======================================================  ===============  =======
SD1.x          clip_l: cond_stage_model.transformer.                    8 per level      0.18215
SD2.x          clip_h: cond_stage_model.model. (OpenCLIP ViT-H), or     64 channels      0.18215
               conditioner.embedders.0.model. (sgm layout)              per head
SDXL           clip_l: conditioner.embedders.0.transformer.,            64 channels      0.13025
               clip_g: conditioner.embedders.1.model. (OpenCLIP bigG)   per head
SDXL refiner   clip_g: conditioner.embedders.0.model.                   64 channels      0.13025
SD2.1 unCLIP   clip_h: as SD2.x                                         64 channels      0.18215
=============  =======================================================  ===============  =======

SD2.1 unCLIP (-L and -H) is SD2.x with an ADM input for noise-augmented CLIP image embeddings
(nodeflow.sampling.unclip) and, beside it, the CLIP model that makes them (``embedder.model.``: the
image tower under ``embedder.model.visual.``, read by unCLIPCheckpointLoader, and the rest of that
CLIP model, unused) and the augmentation's noise schedule (``noise_augmentor.``: buffers of the
original training code, rebuilt from its formula), as in ComfyUI's SD21UnclipL / SD21UnclipH.

OpenCLIP towers are stored in OpenCLIP's layout (converted by nodeflow.loading.open_clip), CLIP-L in
transformers' (loaded as it is), as in ComfyUI's supported_models (SD20, SDXL, SDXLRefiner
.process_clip_state_dict). The CLIP values' settings are nodeflow.text.families'.

Noise schedule: all five use SD's scaled-linear betas 0.00085..0.012 over 1000 steps. Epsilon
prediction unless: an ``sd2-v`` or ``sd2-unclip-v`` kind (a ``v_pred`` key, or ComfyUI's weight-statistic guess, see
nodeflow.loading.detect), or a ``v_pred`` key in an SDXL file (ComfyUI's SDXL.model_type); with
``v_pred``, a ``ztsnr`` key also rescales the sigmas to zero terminal SNR
(ModelSampling.discrete(zsnr=True)). ComfyUI reads the markers on SDXL only; nodeflow honours them
on SD2 too, where ComfyUI would ignore them. The SDXL U-Nets' ADM vector (pooled text + sizes) is
named by ``Family.adm`` for the sampler (nodeflow.sampling.adm).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nodeflow.loading.open_clip import HIDDEN_ACT as OPEN_CLIP_ACT
from nodeflow.loading.open_clip import is_open_clip, open_clip_to_transformers
from nodeflow.sampling import adm
from nodeflow.sampling.model import LatentFormat
from nodeflow.sampling.model_sampling import ModelSampling


@dataclass(frozen=True)
class Family:
    name: str
    towers: dict[str, tuple[str, ...]]  # tower -> candidate key prefixes (the first present is used)
    head_channels: int | None  # None: SD1's 8 heads per level
    latent_format: LatentFormat  # SD1/SD2: 0.18215; SDXL: 0.13025 (and its preview factors)
    adm: str | None = None  # which ADM vector the U-Net's label_emb takes (nodeflow.sampling.adm)
    vision_prefix: str | None = None  # where the file's CLIP image tower is (original layout), if it has one
    #: keys of the file's other parts that no model is built from (checked as claimed, not loaded)
    unused_prefixes: tuple[str, ...] = ()


FAMILIES = {
    "sd1": Family("SD1.x", {"clip_l": ("cond_stage_model.transformer.",)}, None, LatentFormat()),
    "sd2": Family("SD2.x", {"clip_h": ("cond_stage_model.model.", "conditioner.embedders.0.model.")}, 64,
                  LatentFormat()),
    "sdxl": Family("SDXL", {"clip_l": ("conditioner.embedders.0.transformer.",),
                            "clip_g": ("conditioner.embedders.1.model.",)}, 64, LatentFormat.sdxl(), adm.SDXL),
    "sdxl-refiner": Family("SDXL refiner", {"clip_g": ("conditioner.embedders.0.model.",)}, 64,
                           LatentFormat.sdxl(), adm.SDXL_REFINER),
    # named as SD2.x: its ControlNets, LoRAs and the like are SD2.x's
    "sd2-unclip": Family("SD2.x", {"clip_h": ("cond_stage_model.model.", "conditioner.embedders.0.model.")},
                         64, LatentFormat(), adm.SD2_UNCLIP, vision_prefix="embedder.model.visual.",
                         unused_prefixes=("embedder.", "noise_augmentor.")),
}
#: The kinds of nodeflow.loading.detect that load, and their family.
KIND_FAMILY = {"sd1": "sd1", "sd1-inpaint": "sd1", "sd2": "sd2", "sd2-v": "sd2", "sd2-inpaint": "sd2",
               "sdxl": "sdxl", "sdxl-inpaint": "sdxl", "sdxl-refiner": "sdxl-refiner",
               "sd2-unclip": "sd2-unclip", "sd2-unclip-v": "sd2-unclip"}
#: Every prefix a text encoder may have (for reading and for the unclaimed-keys check).
TEXT_PREFIXES = ("cond_stage_model.", "conditioner.embedders.")
#: The towers whose pooled output is projected, and whose OpenCLIP weights use GELU.
OPEN_CLIP_TOWERS = ("clip_h", "clip_g")


def take_text_parts(family: Family, sd: dict[str, torch.Tensor],
                    ignored: Callable[[str], object] = lambda key: False) -> dict[str, dict[str, torch.Tensor]]:
    """Remove each tower's keys from ``sd`` (under the first of its prefixes that has keys); return
    {tower: its tensors without the prefix, less the keys ``ignored`` (given the whole key) says}
    (an empty dict for a tower the file does not have)."""
    parts = {}
    for tower, prefixes in family.towers.items():
        prefix = next((p for p in prefixes if any(k.startswith(p) for k in sd)), prefixes[0])
        taken = {k: sd.pop(k) for k in [k for k in sd if k.startswith(prefix)]}
        parts[tower] = {k[len(prefix):]: v for k, v in taken.items() if not ignored(k)}
    return parts


def build_clip(family_key: str, parts: dict[str, dict[str, torch.Tensor]], tokenizer, device: torch.device,
               dtype: torch.dtype):
    """The CLIP socket value of ``family_key`` from its towers' tensors (``take_text_parts``)."""
    from nodeflow.text.families import sd2_text_encoder, sdxl_refiner_text_encoder, sdxl_text_encoder
    from nodeflow.text.text_encoder import text_encoder_from_state_dict

    if family_key == "sd1":
        return text_encoder_from_state_dict(parts["clip_l"], tokenizer, device=device, dtype=dtype)
    models = {tower: tower_model(tower, sd, device, dtype) for tower, sd in parts.items()}
    if family_key in ("sd2", "sd2-unclip"):
        return sd2_text_encoder(models["clip_h"], tokenizer, device, dtype)
    if family_key == "sdxl":
        return sdxl_text_encoder(models["clip_l"], models["clip_g"], tokenizer, device, dtype)
    return sdxl_refiner_text_encoder(models["clip_g"], tokenizer, device, dtype)


def tower_model(tower: str, sd: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype):
    """One text tower as a transformers model: OpenCLIP towers (``clip_h``, ``clip_g``), stored in
    OpenCLIP's layout, as a CLIPTextModelWithProjection with GELU; CLIP-L as a CLIPTextModel
    (quick_gelu; its ``text_projection``, unused, is not loaded)."""
    from nodeflow.text.text_encoder import clip_model_from_state_dict

    if tower not in OPEN_CLIP_TOWERS:
        return clip_model_from_state_dict(sd, device=device, dtype=dtype)
    if not is_open_clip(sd):
        raise KeyError(f"the {tower} text encoder is not in OpenCLIP's layout (found keys like {sorted(sd)[:3]})")
    return clip_model_from_state_dict(open_clip_to_transformers(sd), device=device, dtype=dtype,
                                      hidden_act=OPEN_CLIP_ACT)


def model_sampling(kind: str, sd: dict[str, torch.Tensor]) -> ModelSampling:
    """The schedule and parameterisation of a checkpoint of ``kind`` (module docstring); ``sd``
    is the file's tensors (only its marker keys are looked at)."""
    v = kind in ("sd2-v", "sd2-unclip-v") or (KIND_FAMILY[kind] != "sd1" and "v_pred" in sd)
    return ModelSampling.discrete("v" if v else "eps", zsnr=v and "ztsnr" in sd)
