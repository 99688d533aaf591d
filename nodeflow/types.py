"""The values that flow along links, in one place: each socket type's name and what its value is.

| socket        | value                                                                           |
|---------------|---------------------------------------------------------------------------------|
| MODEL         | ``Model``: nodeflow.sampling.model.DiffusionModel (U-Net, noise table, patches)  |
| CLIP          | ``Clip``: nodeflow.text.text_encoder.TextEncoder (tokenizer + text model)        |
| VAE           | ``Vae``: nodeflow.image.vae.VAE (encode/decode, tiled when memory is short)     |
| CONTROL_NET   | ``ControlNet``: nodeflow.models.controlnet.ControlNetModel                       |
| SAMPLER       | ``Sampler``: nodeflow.sampling.custom.SamplerChoice (a sampler and its options)  |
| SIGMAS        | ``Sigmas``: float32 tensor (N,), the noise levels to visit, decreasing           |
| NOISE         | ``Noise``: nodeflow.sampling.custom.Noise (initial noise from a seed, or none)   |
| GUIDER        | ``Guider``: nodeflow.sampling.custom.Guider (model + guidance over conditioning) |
| CONDITIONING  | ``Conditioning``: a list of (cond (1, T, D), options dict), as ComfyUI's         |
| CLIP_VISION   | ``ClipVision``: nodeflow.image.clip_vision.ClipVision (a CLIP image tower)       |
| CLIP_VISION_OUTPUT | ``ClipVisionOutput``: nodeflow.image.clip_vision.ClipVisionOutput           |
| STYLE_MODEL   | ``StyleModel``: nodeflow.models.style_model.StyleAdapter (T2I style adapter)     |
| GLIGEN        | ``GligenModel``: nodeflow.models.gligen.Gligen (GLIGEN's grounding modules)      |
| LATENT        | ``Latent``: {"samples": (B, 4, H/8, W/8), optional "noise_mask", "batch_index"} |
| IMAGE         | ``Image``: float32 tensor (B, H, W, C) in 0..1                                  |
| MASK          | ``Mask``: float32 tensor (B, H, W) in 0..1                                      |
| INT, FLOAT, STRING, BOOLEAN, CHOICE | the widget values: int, float, str, bool, str             |

Values are immutable by contract: a node that changes a model, a conditioning or a latent returns
a new one (sharing weights), so a cached output never changes. The classes live with the code that
implements them; this module names them for annotations only (nothing is imported at run time, so
it stays at the bottom of the layers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import torch

    from nodeflow.image.clip_vision import ClipVision, ClipVisionOutput
    from nodeflow.image.vae import VAE as Vae
    from nodeflow.models.gligen import Gligen as GligenModel
    from nodeflow.models.style_model import StyleAdapter as StyleModel
    from nodeflow.models.controlnet import ControlNetModel as ControlNet
    from nodeflow.sampling.custom import Guider, Noise
    from nodeflow.sampling.custom import SamplerChoice as Sampler
    from nodeflow.sampling.model import DiffusionModel as Model
    from nodeflow.text.text_encoder import TextEncoder as Clip

    Image = torch.Tensor  # (B, H, W, C) float32 in 0..1
    Mask = torch.Tensor  # (B, H, W) float32 in 0..1
    Conditioning = list[tuple[torch.Tensor, dict[str, Any]]]
    Sigmas = torch.Tensor  # (N,) float32

__all__ = ["MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE", "MASK", "CONTROL_NET", "SAMPLER",
           "SIGMAS", "NOISE", "GUIDER", "CLIP_VISION", "CLIP_VISION_OUTPUT", "STYLE_MODEL", "GLIGEN", "INT", "FLOAT", "STRING", "BOOLEAN", "CHOICE", "ANY", "SOCKET_TYPES",
           "WIDGET_TYPES", "Latent", "Model", "Clip", "Vae", "ControlNet", "Conditioning", "Image", "Mask",
           "Sampler", "Sigmas", "Noise", "Guider", "ClipVision", "ClipVisionOutput", "StyleModel",
           "GligenModel"]

# Socket type names (also exported by nodeflow.spec, the node API).
MODEL = "MODEL"
CLIP = "CLIP"
VAE = "VAE"
CONDITIONING = "CONDITIONING"
LATENT = "LATENT"
IMAGE = "IMAGE"
MASK = "MASK"
CONTROL_NET = "CONTROL_NET"
SAMPLER = "SAMPLER"
SIGMAS = "SIGMAS"
NOISE = "NOISE"
GUIDER = "GUIDER"
CLIP_VISION = "CLIP_VISION"
CLIP_VISION_OUTPUT = "CLIP_VISION_OUTPUT"
STYLE_MODEL = "STYLE_MODEL"
GLIGEN = "GLIGEN"
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
CHOICE = "CHOICE"  # an enumerated string; links carry it as a STRING-like value
ANY = "*"  # accepts any type (debugging and utility nodes)

SOCKET_TYPES = (MODEL, CLIP, VAE, CONDITIONING, LATENT, IMAGE, MASK, CONTROL_NET, SAMPLER, SIGMAS, NOISE, GUIDER,
                CLIP_VISION, CLIP_VISION_OUTPUT, STYLE_MODEL, GLIGEN, INT, FLOAT, STRING, BOOLEAN, CHOICE, ANY)
WIDGET_TYPES = (INT, FLOAT, STRING, BOOLEAN, CHOICE)


class _LatentSamples(TypedDict):
    samples: torch.Tensor  # (B, C, H/8, W/8), in the VAE's unscaled space


class Latent(_LatentSamples, total=False):
    """A LATENT value: a plain dict, as ComfyUI's; ``samples`` is always there."""

    noise_mask: torch.Tensor  # (..., h, w) at any size: where sampling may change the latent
    batch_index: list[int]  # each sample's index in the batch its noise is drawn for
