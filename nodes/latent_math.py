"""Latent arithmetic and batch nodes: add, subtract, multiply, interpolate, batch, seed behaviour,
rebatch, concat and cut (ComfyUI's ids, inputs and behaviour; the maths is in
nodeflow.image.latent_ops)."""

from __future__ import annotations

import torch

from nodeflow.errors import NodeInputError
from nodeflow.image import latent_ops
from nodeflow.spec import LATENT, Choice, Float, Input, Int, Output, node

MAX_RESOLUTION = 16384


def _with_samples(latent: dict, samples: torch.Tensor) -> dict:
    """A copy of ``latent`` (noise mask, batch index... kept) holding ``samples``."""
    result = dict(latent)
    result["samples"] = samples
    return result


def _second_operand(samples1: dict, samples2: dict, repeat_batch: bool = True) -> torch.Tensor:
    """samples2 resized to samples1's size (and batch); a different channel count is refused."""
    a, b = samples1["samples"], samples2["samples"]
    if a.ndim != b.ndim or a.shape[1] != b.shape[1]:
        raise NodeInputError("samples2", f"latents of shape {tuple(b.shape)} cannot be combined with "
                                         f"{tuple(a.shape)} (the channel counts must be equal)")
    return latent_ops.match_latent(a.shape, b, repeat_batch).to(a)


@node("LatentAdd", display="Add Latents", category="latent/advanced",
      inputs=[Input("samples1", LATENT), Input("samples2", LATENT)], outputs=[Output(LATENT)])
def latent_add(samples1: dict, samples2: dict):
    """samples1 + samples2 (samples2 resized to samples1's size and batch if they differ)."""
    return (_with_samples(samples1, samples1["samples"] + _second_operand(samples1, samples2)),)


@node("LatentSubtract", display="Subtract Latents", category="latent/advanced",
      inputs=[Input("samples1", LATENT), Input("samples2", LATENT)], outputs=[Output(LATENT)])
def latent_subtract(samples1: dict, samples2: dict):
    """samples1 - samples2 (samples2 resized to samples1's size and batch if they differ)."""
    return (_with_samples(samples1, samples1["samples"] - _second_operand(samples1, samples2)),)


@node("LatentMultiply", display="Multiply Latent", category="latent/advanced",
      inputs=[Input("samples", LATENT), Float("multiplier", 1.0, min=-10.0, max=10.0, step=0.01)],
      outputs=[Output(LATENT)])
def latent_multiply(samples: dict, multiplier: float):
    """samples * multiplier."""
    return (_with_samples(samples, samples["samples"] * multiplier),)


@node("LatentInterpolate", display="Interpolate Latents", category="latent/advanced",
      inputs=[Input("samples1", LATENT), Input("samples2", LATENT),
              Float("ratio", 1.0, min=0.0, max=1.0, step=0.01,
                    tooltip="1: samples1, 0: samples2")],
      outputs=[Output(LATENT)])
def latent_interpolate(samples1: dict, samples2: dict, ratio: float):
    """Blend two latents, interpolating the direction and the length of each latent pixel's
    channel vector separately (samples2 resized if needed)."""
    b = _second_operand(samples1, samples2)
    return (_with_samples(samples1, latent_ops.interpolate(samples1["samples"], b, ratio)),)


@node("LatentBatch", display="Batch Latents", category="latent/batch",
      inputs=[Input("samples1", LATENT), Input("samples2", LATENT)], outputs=[Output(LATENT)])
def latent_batch(samples1: dict, samples2: dict):
    """Join two batches (samples2 resized to samples1's size); batch indices are each latent's
    own, or its position in its input batch."""
    a = samples1["samples"]
    b = _second_operand(samples1, samples2, repeat_batch=False)
    result = _with_samples(samples1, torch.cat((a, b)))
    result["batch_index"] = (list(samples1.get("batch_index", range(a.shape[0])))
                             + list(samples2.get("batch_index", range(b.shape[0]))))
    return (result,)


@node("LatentBatchSeedBehavior", display="Latent Batch Seed Behavior", category="latent/advanced",
      inputs=[Input("samples", LATENT), Choice("seed_behavior", ["random", "fixed"], "fixed")],
      outputs=[Output(LATENT)])
def latent_batch_seed_behavior(samples: dict, seed_behavior: str):
    """fixed: every latent gets the noise of the first one's batch index; random: the batch
    indices are dropped (each latent its own noise, by position)."""
    result = dict(samples)
    if seed_behavior == "random":
        result.pop("batch_index", None)
    else:
        first = list(samples.get("batch_index", [0]))[0]
        result["batch_index"] = [first] * samples["samples"].shape[0]
    return (result,)


@node("RebatchLatents", display="Rebatch Latents", category="latent/batch",
      inputs=[Input("latents", LATENT), Int("batch_size", 1, min=1, max=4096)], outputs=[Output(LATENT)])
def rebatch_latents(latents: dict, batch_size: int):
    """Regroup latents into batches of ``batch_size``, each latent keeping its batch index (so its
    noise) and its noise mask. ComfyUI hands each batch to the next nodes separately; nodeflow's
    links carry one value, so the batches are passed on joined (batch indices and masks as
    ComfyUI gives them to each batch; other entries of the latent are dropped, as there)."""
    return (latent_ops.join_latent_batches(latent_ops.rebatch_latents([latents], batch_size)),)


@node("LatentConcat", display="Concat Latents", category="latent/advanced",
      inputs=[Input("samples1", LATENT), Input("samples2", LATENT), Choice("dim", list(latent_ops.CONCAT_DIMS))],
      outputs=[Output(LATENT)])
def latent_concat(samples1: dict, samples2: dict, dim: str):
    """Join samples2 after samples1 along x (width), y (height) or t (the third dimension from the
    end: channels, for image latents); "-" puts samples2 first."""
    try:
        joined = latent_ops.concat(samples1["samples"], samples2["samples"], dim)
    except ValueError as error:
        raise NodeInputError("samples2", str(error)) from None
    return (_with_samples(samples1, joined),)


@node("LatentCut", display="Cut Latent", category="latent/advanced",
      inputs=[Input("samples", LATENT), Choice("dim", list(latent_ops.CUT_DIMS)),
              Int("index", 0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION,
                  tooltip="Start (negative: from the end)"),
              Int("amount", 1, min=1, max=MAX_RESOLUTION)],
      outputs=[Output(LATENT)])
def latent_cut(samples: dict, dim: str, index: int, amount: int):
    """Keep ``amount`` slices from ``index`` along x, y or t (clamped into the latent)."""
    return (_with_samples(samples, latent_ops.cut(samples["samples"], dim, index, amount)),)
