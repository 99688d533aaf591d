"""Model patches that change how the MODEL is sampled or run (ComfyUI's advanced/model and model_patches nodes)."""

from __future__ import annotations

from nodeflow.spec import MODEL, Boolean, Choice, Float, Input, Output, node

#: ComfyUI's choice -> nodeflow.sampling.model_sampling's parameterisation
SAMPLING = {"eps": "eps", "v_prediction": "v", "lcm": "lcm", "x0": "x0"}


@node("ModelSamplingDiscrete", display="ModelSamplingDiscrete", category="advanced/model",
      inputs=[Input("model", MODEL),
              Choice("sampling", list(SAMPLING),
                     tooltip="What the model predicts: the noise (eps: SD1, SDXL), v (SD2-768 and "
                             "v-prediction fine-tunes), the clean image (x0), or LCM's distilled eps"),
              Boolean("zsnr", False, tooltip="Rescale the noise schedule to zero terminal SNR (models "
                                             "trained that way)")],
      outputs=[Output(MODEL)])
def model_sampling_discrete(model, sampling: str, zsnr: bool):
    """Sample the model as an eps, v-prediction, x0 or LCM model, optionally with a zero-terminal-SNR schedule."""
    from nodeflow.errors import NodeInputError

    if sampling not in SAMPLING:
        raise NodeInputError("sampling", f"{sampling!r} is not one of {', '.join(SAMPLING)}")
    return (model.clone_with(sampling=model.sampling.with_parameterization(SAMPLING[sampling], zsnr)),)


#: ComfyUI's ModelSamplingContinuousEDM choices -> (parameterization, sigma_data, latent format)
CONTINUOUS_EDM = {"v_prediction": ("v", 1.0, None), "edm": ("edm", 0.5, None),
                  "edm_playground_v2.5": ("edm", 0.5, "playground_v25"), "eps": ("eps", 1.0, None)}


def _sigma_bound(name: str, default: float):
    return Float(name, default, min=0.0, max=1000.0, step=0.001)


def _continuous(model, time: str, parameterization: str, sigma_max: float, sigma_min: float,
                sigma_data: float = 1.0):
    from nodeflow.errors import NodeInputError
    from nodeflow.sampling.model_sampling_continuous import ContinuousModelSampling

    if not 0.0 < sigma_min < sigma_max:
        raise NodeInputError("sigma_min", f"must be above 0 and below sigma_max ({sigma_max}); got {sigma_min}")
    return ContinuousModelSampling.continuous(time, parameterization, sigma_min, sigma_max, sigma_data,
                                              model.sampling.schedule)


@node("ModelSamplingContinuousEDM", display="ModelSamplingContinuousEDM", category="advanced/model",
      inputs=[Input("model", MODEL),
              Choice("sampling", list(CONTINUOUS_EDM),
                     tooltip="What the model predicts: v, EDM's preconditioned output (sigma_data 0.5; "
                             "Playground v2.5 also normalises its latents per channel) or the noise"),
              _sigma_bound("sigma_max", 120.0), _sigma_bound("sigma_min", 0.002)],
      outputs=[Output(MODEL)])
def model_sampling_continuous_edm(model, sampling: str, sigma_max: float, sigma_min: float):
    """Sample a model trained in continuous time the EDM way (timestep 0.25 ln sigma): CosXL,
    Playground v2.5 and EDM fine-tunes."""
    from nodeflow.errors import NodeInputError
    from nodeflow.sampling.model import LatentFormat

    if sampling not in CONTINUOUS_EDM:
        raise NodeInputError("sampling", f"{sampling!r} is not one of {', '.join(CONTINUOUS_EDM)}")
    parameterization, sigma_data, latent_format = CONTINUOUS_EDM[sampling]
    changes = {"sampling": _continuous(model, "edm", parameterization, sigma_max, sigma_min, sigma_data)}
    if latent_format is not None:
        changes["latent_format"] = getattr(LatentFormat, latent_format)()
    return (model.clone_with(**changes),)


@node("ModelSamplingContinuousV", display="ModelSamplingContinuousV", category="advanced/model",
      inputs=[Input("model", MODEL), Choice("sampling", ["v_prediction"]),
              _sigma_bound("sigma_max", 500.0), _sigma_bound("sigma_min", 0.03)],
      outputs=[Output(MODEL)])
def model_sampling_continuous_v(model, sampling: str, sigma_max: float, sigma_min: float):
    """Sample a v-prediction model trained in continuous time (timestep (2 / pi) atan sigma)."""
    return (model.clone_with(sampling=_continuous(model, "v", "v", sigma_max, sigma_min)),)


@node("RescaleCFG", display="RescaleCFG", category="advanced/model",
      inputs=[Input("model", MODEL), Float("multiplier", 0.7, min=0.0, max=1.0, step=0.01,
                                           tooltip="How much of the rescaled guidance to use (0: plain CFG)")],
      outputs=[Output(MODEL)])
def rescale_cfg(model, multiplier: float):
    """CFG rescaled to the conditional prediction's spread (for v-prediction and zero-SNR models)."""
    from nodeflow.sampling.model_patches import rescale_cfg as rescaled

    return (model.clone_with(guidance_function=rescaled(multiplier)),)


def _freeu(model, b1: float, b2: float, s1: float, s2: float, version: int):
    from nodeflow.errors import NodeInputError
    from nodeflow.sampling.model_patches import freeu

    channels = getattr(getattr(model.unet, "config", None), "model_channels", None)
    if channels is None:
        raise NodeInputError("model", "FreeU needs a U-Net model (its base width sets which blocks it scales)")
    patch = freeu(channels, b1, b2, s1, s2, version)
    return (model.with_unet_patches(output_block=(patch,)),)


def _freeu_inputs(b1: float, b2: float) -> list:
    return [Input("model", MODEL), Float("b1", b1, min=0.0, max=10.0, step=0.01),
            Float("b2", b2, min=0.0, max=10.0, step=0.01), Float("s1", 0.9, min=0.0, max=10.0, step=0.01),
            Float("s2", 0.2, min=0.0, max=10.0, step=0.01)]


@node("FreeU", display="FreeU", category="model_patches/unet", inputs=_freeu_inputs(1.1, 1.2), outputs=[Output(MODEL)])
def free_u(model, b1: float, b2: float, s1: float, s2: float):
    """FreeU: stronger decoder backbone features (b), weaker low frequencies of the skip features (s)."""
    return _freeu(model, b1, b2, s1, s2, 1)


@node("FreeU_V2", display="FreeU_V2", category="model_patches/unet", inputs=_freeu_inputs(1.3, 1.4),
      outputs=[Output(MODEL)])
def free_u_v2(model, b1: float, b2: float, s1: float, s2: float):
    """FreeU version 2: the backbone scaled in proportion to its channel-mean map."""
    return _freeu(model, b1, b2, s1, s2, 2)


@node("CFGZeroStar", display="CFGZeroStar", category="advanced/guidance", inputs=[Input("model", MODEL)],
      outputs=[Output(MODEL, "patched_model")])
def cfg_zero_star(model):
    """CFG-Zero*: the unconditional estimate rescaled to its projection on the conditional one."""
    from nodeflow.sampling.model_patches import cfg_zero_star as patch

    return (model.clone_with(post_guidance=model.post_guidance + (patch(),)),)


@node("CFGNorm", display="CFGNorm", category="advanced/guidance",
      inputs=[Input("model", MODEL), Float("strength", 1.0, min=0.0, max=100.0, step=0.01)],
      outputs=[Output(MODEL, "patched_model")])
def cfg_norm(model, strength: float):
    """The guided estimate kept, per pixel, within the conditional estimate's norm."""
    from nodeflow.sampling.model_patches import cfg_norm as patch

    return (model.clone_with(post_guidance=model.post_guidance + (patch(strength),)),)


@node("DifferentialDiffusion", display="Differential Diffusion", category="_for_testing",
      inputs=[Input("model", MODEL), Float("strength", 1.0, min=0.0, max=1.0, step=0.01, optional=True)],
      outputs=[Output(MODEL)])
def differential_diffusion(model, strength: float = 1.0):
    """Inpaint with a soft mask: each pixel changes for the share of the steps its mask value gives."""
    from nodeflow.sampling.model_patches import differential_diffusion as mask_function

    return (model.clone_with(denoise_mask_function=mask_function(strength)),)


@node("APG", display="Adaptive Projected Guidance", category="sampling/custom_sampling",
      inputs=[Input("model", MODEL),
              Float("eta", 1.0, min=-10.0, max=10.0, step=0.01,
                    tooltip="Scale of the guidance's part parallel to the conditional prediction (1: plain CFG)"),
              Float("norm_threshold", 5.0, min=0.0, max=50.0, step=0.1,
                    tooltip="Scale the guidance down to at most this norm (0: no limit)"),
              Float("momentum", 0.0, min=-5.0, max=1.0, step=0.01,
                    tooltip="Running average of the guidance over the steps (0: none)")],
      outputs=[Output(MODEL)])
def adaptive_projected_guidance(model, eta: float, norm_threshold: float, momentum: float):
    """Adaptive projected guidance: high CFG scales without oversaturation."""
    from nodeflow.sampling.model_patches import adaptive_projected_guidance as apg

    return (model.clone_with(pre_guidance=model.pre_guidance + (apg(eta, norm_threshold, momentum),)),)
