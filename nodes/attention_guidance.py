"""Guidance from a degraded self-attention (ComfyUI's PerturbedAttentionGuidance and
SelfAttentionGuidance): MODEL in, patched copy out; the maths in nodeflow.sampling.attention_guidance."""

from __future__ import annotations

from nodeflow.spec import MODEL, Float, Input, Output, node


def _require_unet(model) -> None:
    from nodeflow.errors import NodeInputError

    if getattr(getattr(model.unet, "config", None), "model_channels", None) is None:
        raise NodeInputError("model", "attention guidance needs a U-Net model (it patches the middle block's "
                                      "self-attention)")


@node("PerturbedAttentionGuidance", display="PerturbedAttentionGuidance", category="model_patches/unet",
      inputs=[Input("model", MODEL),
              Float("scale", 3.0, min=0.0, max=100.0, step=0.01, round=0.01,
                    tooltip="How far to steer away from the prediction whose middle-block self-attention "
                            "is the identity (0: plain CFG)")],
      outputs=[Output(MODEL)])
def perturbed_attention_guidance(model, scale: float):
    """Perturbed-Attention Guidance: the positive prompt predicted again with the middle block's
    self-attention made the identity, and the result pushed away from that prediction."""
    from nodeflow.sampling.attention_guidance import perturbed_attention_guidance as patch

    _require_unet(model)
    return (patch(model, scale),)


@node("SelfAttentionGuidance", display="Self-Attention Guidance", category="_for_testing",
      inputs=[Input("model", MODEL),
              Float("scale", 0.5, min=-2.0, max=5.0, step=0.01,
                    tooltip="How far to steer away from the prediction of the blurred image (0: plain CFG)"),
              Float("blur_sigma", 2.0, min=0.0, max=10.0, step=0.1,
                    tooltip="The Gaussian blur's deviation, in latent pixels, where the self-attention looks most")],
      outputs=[Output(MODEL)])
def self_attention_guidance(model, scale: float, blur_sigma: float):
    """Self-Attention Guidance: the negative prompt's estimate blurred where the middle block's
    self-attention looks most, predicted again, and the result pushed away from it."""
    from nodeflow.sampling.attention_guidance import self_attention_guidance as patch

    _require_unet(model)
    return (patch(model, scale, blur_sigma),)
