"""The MODEL socket value: a U-Net with its schedule, latent format, device and dtype.

SDXL and SD2.1 unCLIP U-Nets (a ``label_emb``) also take the ADM vector ``y`` of each conditioning
entry (``encode_adm``, nodeflow.sampling.adm); other U-Nets are called without it.

Immutable: ``clone_with`` returns a new wrapper sharing the weights (a LoRA node adds patches
that way), so a cached model never changes under another node. What a patch must remember during
one sampling run (SAG's attention map) lives in the guidance's ``run_state`` dict, made per run and
handed to the U-Net's hooks and to the post-guidance functions (``GuidanceStep``), never in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from nodeflow.models.unet_patches import UNetPatches
from nodeflow.sampling import adm
from nodeflow.sampling.control_hooks import chain_residuals
from nodeflow.sampling.gligen import gligen_patches
from nodeflow.sampling.latent_preview import SD1_RGB_FACTORS, SDXL_RGB_BIAS, SDXL_RGB_FACTORS
from nodeflow.sampling.model_sampling import ModelSampling


@dataclass(frozen=True)
class LatentFormat:
    """How the VAE's latents are scaled for the diffusion model (SD1.x and SD2.x: 0.18215; SDXL,
    another VAE: 0.13025, ``sdxl()``; Playground v2.5: per-channel mean and deviation, then 0.5)."""

    scale_factor: float = 0.18215
    channels: int = 4
    #: latent -> RGB preview factors (channels x 3) and bias, see nodeflow.sampling.latent_preview
    rgb_factors: tuple[tuple[float, float, float], ...] = SD1_RGB_FACTORS
    rgb_bias: tuple[float, float, float] | None = None
    #: per-channel statistics subtracted and divided out before the scale (Playground v2.5)
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None
    #: previews by decoding instead of the factors: scaled latent (B, C, h, w) -> IMAGE, set for
    #: checkpoints whose VAE is tiny (nodeflow.sampling.latent_preview.VaePreview)
    preview_decoder: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)

    @classmethod
    def sdxl(cls) -> LatentFormat:
        """SDXL's (base and refiner): scale 0.13025 (shared/reference/comfyui-conventions.md, 19)."""
        return cls(scale_factor=0.13025, rgb_factors=SDXL_RGB_FACTORS, rgb_bias=SDXL_RGB_BIAS)

    @classmethod
    def playground_v25(cls) -> LatentFormat:
        """Playground v2.5's (an SDXL VAE whose latents were normalised per channel), as ComfyUI's
        SDXL_Playground_2_5 format; the preview uses SDXL's factors."""
        return cls(scale_factor=0.5, rgb_factors=SDXL_RGB_FACTORS, rgb_bias=SDXL_RGB_BIAS,
                   latents_mean=(-1.6574, 1.886, -1.383, 2.5155), latents_std=(8.4927, 5.9022, 6.5498, 5.2299))

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        if self.latents_mean is None:
            return latent * self.scale_factor
        mean, std = self._statistics(latent)
        return (latent - mean) * self.scale_factor / std

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        if self.latents_mean is None:
            return latent / self.scale_factor
        mean, std = self._statistics(latent)
        return latent * std / self.scale_factor + mean

    def _statistics(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The channel means and deviations as (1, C, 1, 1) tensors like ``latent``."""
        return tuple(torch.tensor(values, dtype=latent.dtype, device=latent.device).view(1, -1, 1, 1)
                     for values in (self.latents_mean, self.latents_std))


@dataclass(frozen=True, eq=False)
class DiffusionModel:
    """A denoiser ready for the samplers."""

    unet: torch.nn.Module
    sampling: ModelSampling
    latent_format: LatentFormat
    device: torch.device
    dtype: torch.dtype
    patches: tuple = ()
    name: str = ""
    #: which ADM vector the U-Net's label_emb takes: adm.SDXL, adm.SDXL_REFINER, adm.SD2_UNCLIP, or None to tell
    #: from the shapes (nodeflow.sampling.adm.adm_kind); unused by U-Nets without label_emb
    adm: str | None = None
    #: the model family's name as nodeflow.loading.families has it ("SD1.x", "SDXL" ...), set by
    #: the loaders; "" when unknown (a ControlNet of another family is refused by it)
    family: str = ""
    #: model patches (nodeflow.sampling.model_patches): a guidance function replacing CFG's
    #: combination (the last one set wins, as in ComfyUI), and hooks into the U-Net's forward
    #: (nodeflow.models.unet_patches: attention and block patches, in the order they were added)
    guidance_function: Callable | None = None
    #: applied before it, in order, when the guidance has a negative list (APG): (x, sigma, cond,
    #: uncond, cfg, run_state) -> (cond, uncond), as ComfyUI's pre-CFG functions
    pre_guidance: tuple[Callable, ...] = ()
    #: applied after it, in order (CFGZeroStar, CFGNorm, PAG, SAG): (x, sigma, guided, cond, uncond,
    #: cfg, step) -> guided, ``step`` a GuidanceStep (the model, the run's state, predict again)
    post_guidance: tuple[Callable, ...] = ()
    #: the unconditional estimate is computed even at cfg 1, for a post-guidance function that reads
    #: it (ComfyUI's disable_cfg1_optimization: SAG)
    uncond_at_cfg1: bool = False
    unet_patches: UNetPatches = UNetPatches()
    #: (sampling, sigma, mask, sigmas) -> the inpainting mask at this sigma (DifferentialDiffusion)
    denoise_mask_function: Callable | None = None

    def clone_with(self, **changes) -> DiffusionModel:
        return replace(self, **changes)

    def with_unet_patches(self, **hooks: tuple) -> DiffusionModel:
        """A copy whose U-Net hooks also include ``hooks`` (UNetPatches fields), after the present ones."""
        return replace(self, unet_patches=self.unet_patches + UNetPatches(**hooks))

    def guide(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
              cfg: float, *, predict: Repredict | None = None, run_state: dict | None = None,
              has_negative: bool = True) -> torch.Tensor:
        """The guided clean-latent estimate from the conditional and unconditional ones: the
        model's pre-guidance functions on both (when the guidance has a negative list, even one
        skipped at cfg 1: ``has_negative``), then uncond + (cond - uncond) cfg or the model's
        guidance function, then its post-guidance functions in order, as ComfyUI's sampling_function.
        The caller (the guidance) gives ``predict``, which predicts the conditioning lists behind
        ``cond`` and ``uncond`` again, and its run's ``run_state``; both reach the post-guidance
        functions through a ``GuidanceStep``, the state also the pre-guidance ones."""
        run_state = {} if run_state is None else run_state
        if has_negative:
            cond, uncond = self.pre_guide(x, sigma, cond, uncond, cfg, run_state)
        if self.guidance_function is not None:
            guided = self.guidance_function(x, sigma, cond, uncond, cfg)
        else:
            guided = uncond + (cond - uncond) * cfg
        return self.post_guide(x, sigma, guided, cond, uncond, cfg, predict, run_state)

    def pre_guide(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                  cfg: float, run_state: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The estimates after the model's pre-guidance functions, in order."""
        for function in self.pre_guidance:
            cond, uncond = function(x, sigma, cond, uncond, cfg, run_state)
        return cond, uncond

    def post_guide(self, x: torch.Tensor, sigma: torch.Tensor, guided: torch.Tensor, cond: torch.Tensor,
                   uncond: torch.Tensor, cfg: float, predict: Repredict | None, run_state: dict) -> torch.Tensor:
        """The guided estimate after the model's post-guidance functions, in order."""
        if self.post_guidance:
            step = GuidanceStep(self, predict, run_state)
            for function in self.post_guidance:
                guided = function(x, sigma, guided, cond, uncond, cfg, step)
        return guided

    @property
    def patches_guidance(self) -> bool:
        """Whether a patch changes how the conditional and unconditional estimates combine."""
        return self.guidance_function is not None or bool(self.pre_guidance) or bool(self.post_guidance)

    @property
    def in_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def adm_channels(self) -> int | None:
        """The width of the ADM vector the U-Net takes (SDXL: 2816, refiner: 2560); None if none."""
        return getattr(getattr(self.unet, "config", None), "adm_in_channels", None) or None

    def encode_adm(self, options: dict, width: int, height: int, negative: bool = False,
                   seed: int = 0) -> torch.Tensor | None:
        """The ADM vector ``y`` (B, adm_channels) of a conditioning entry's options for an image of
        ``width`` x ``height`` pixels (the latent's size x 8, for sizes the options do not give),
        or None for a U-Net without label_emb. ``negative``: the entry is in the negative list;
        ``seed``: the sampler's noise seed (unCLIP's noise augmentation draws from it)."""
        channels = self.adm_channels
        if channels is None:
            return None
        return adm.encode_adm(options, width, height, channels=channels, kind=self.adm, negative=negative, seed=seed)

    @torch.no_grad()
    def predict_denoised(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                         control=None, concat: torch.Tensor | None = None, halves: int = 1,
                         y: torch.Tensor | None = None, cond_or_uncond: tuple[int, ...] = (),
                         run_state: dict | None = None, gligen: tuple | None = None) -> torch.Tensor:
        """D(x; sigma): the clean-latent estimate for x (B, C, h, w) at sigma (B,), float32.

        The U-Net runs in the model's dtype on its device on c_in(sigma) x = x / sqrt(sigma^2 + 1)
        and the nearest training timestep; its output is turned back into D in float32 on x's
        device (eps or v, see ModelSampling). ``control`` is the last ``ControlHook`` of a chain
        (ControlNets); ``concat`` holds extra input channels (the inpainting model's mask and
        masked latent). ``halves``: how many equal parts the batch is made of (conditional,
        unconditional ...), so ControlNets give each part its own control images. ``y`` (B, adm):
        the ADM vectors of SDXL models (``encode_adm``), given to the U-Net and ControlNets.
        ``cond_or_uncond``: for each of the halves, 0 if it is conditional, 1 if unconditional (told
        to the U-Net patches, as ComfyUI's transformer_options); ``run_state``: the sampling run's
        state dict, told to them too (``PatchCall.extra["run_state"]``). ``gligen``: a conditioning
        entry's GLIGEN boxes, run by hooks added for this call (nodeflow.sampling.gligen).
        """
        scaled = self.sampling.calculate_input(sigma, x).to(self.device, self.dtype)  # (B, C, h, w)
        context = context.to(self.device, self.dtype)
        timesteps = self.sampling.timestep(sigma).to(self.device)  # (B,)
        extra = {}
        if y is not None:  # only SDXL U-Nets take it (and are given it)
            extra["y"] = y.to(self.device, self.dtype)
        residuals = None
        if control is not None:  # ControlNets see the scaled latent only, not the concat channels
            residuals = chain_residuals(control, scaled, timesteps, context, sigma, self, halves, **extra)
        model_input = scaled
        if concat is not None:
            model_input = torch.cat([scaled, concat.to(scaled)], dim=1)  # (B, C + c, h, w)
        patches = self.unet_patches
        if gligen is not None:
            patches = patches + gligen_patches(gligen, tuple(model_input.shape))
        if patches:
            extra.update(patches=patches, sigma=sigma,
                         extra={"cond_or_uncond": cond_or_uncond, "run_state": run_state})
        output = self.unet(model_input, timesteps, context, control=residuals, **extra)
        return self.sampling.calculate_denoised(sigma, output.float().to(x.device), x)


#: (which, x, model) -> the combined prediction of the positive (0) or negative (1) conditioning list
#: of a guidance step for the latent x at the step's sigma, by ``model``
Repredict = Callable[[int, torch.Tensor, DiffusionModel], torch.Tensor]


@dataclass(frozen=True, eq=False)
class GuidanceStep:
    """What a post-guidance function is told besides the estimates (ComfyUI's post-CFG arguments
    "model", "model_options", "cond" and "uncond"): the model being sampled, with all its patches;
    the sampling run's ``run_state`` (what the model's hooks left for it, e.g. an attention map);
    and ``predict``, to evaluate the step's conditioning lists again."""

    model: DiffusionModel
    repredict: Repredict | None = None
    run_state: dict = field(default_factory=dict)

    def predict(self, which: int, x: torch.Tensor, model: DiffusionModel | None = None) -> torch.Tensor:
        """The positive (``which`` 0) or negative (1) list's combined prediction for ``x`` at this
        step's sigma by ``model`` (default: the sampled model; e.g. a copy with another attention
        patch), with the areas, masks, ControlNets and ADM vectors of the step's own predictions,
        the list alone (its forwards tell the U-Net's hooks that their chunks are list 0, as
        ComfyUI's calc_cond_batch(model, [conds], ...))."""
        if self.repredict is None:
            raise ValueError("this post-guidance function evaluates the model again, and the guidance that "
                             "called it cannot (it gave no predict function)")
        return self.repredict(which, x, self.model if model is None else model)
