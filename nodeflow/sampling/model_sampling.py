"""The discrete training schedule of a diffusion model, seen the way Karras et al. (2022) do.

The forward process (Ho et al. 2020) noises a clean latent z0 to z_t = sqrt(abar_t) z0 +
sqrt(1 - abar_t) eps. Dividing by sqrt(abar_t) gives x = z0 + sigma_t eps with
sigma_t = sqrt((1 - abar_t) / abar_t): the variance-exploding view the samplers work in. The
network sees x / sqrt(sigma^2 + 1) (= z_t) and its timestep, and predicts eps (or v); the
"denoised" estimate of z0 follows. Timesteps and sigmas convert through interpolation in
log-sigma (``sigma``, ``fractional_timestep``); the network itself is given the nearest table
index (``timestep``), as ComfyUI gives it.

What the network predicts (``parameterization``): the noise eps (SD1, SDXL), v (Salimans & Ho
2022; SD2-768), the clean latent itself (x0), eps read through LCM's boundary condition (Luo et
al. 2023, "Latent Consistency Models"), whose table keeps only every 20th timestep (50 of 1000,
``skip_steps``), or the EDM preconditioned output F (Karras et al. 2022, table 1: D = c_skip x +
c_out F with the data's standard deviation ``sigma_data``; v is the same with -F). Models trained
in continuous time (nodeflow.sampling.model_sampling_continuous) keep these and change only how
a sigma becomes the network's timestep. ``discrete`` builds any of them, optionally with the zero-terminal-SNR rescale
(Lin et al. 2024), as ComfyUI's ModelSamplingDiscrete node does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ZSNR_LAST_ALPHA_BAR = 4.8973451890853435e-08
PARAMETERIZATIONS = ("eps", "v", "x0", "lcm", "edm")
LCM_ORIGINAL_STEPS = 50  # LCM's table: every (1000 / 50)-th timestep
LCM_SIGMA_DATA = 0.5
LCM_TIMESTEP_SCALING = 10.0


def make_betas(schedule: str = "scaled_linear", steps: int = 1000, linear_start: float = 0.00085,
               linear_end: float = 0.012, cosine_s: float = 8e-3) -> torch.Tensor:
    """Betas (float64, (steps,)). ``scaled_linear`` is SD's: linspace of square roots, squared."""
    if schedule == "scaled_linear":
        return torch.linspace(linear_start**0.5, linear_end**0.5, steps, dtype=torch.float64) ** 2
    if schedule == "linear":
        return torch.linspace(linear_start, linear_end, steps, dtype=torch.float64)
    if schedule == "cosine":  # Nichol & Dhariwal 2021, eq. 17
        t = torch.arange(steps + 1, dtype=torch.float64) / steps + cosine_s
        alphas = torch.cos(t / (1 + cosine_s) * math.pi / 2) ** 2
        alphas = alphas / alphas[0]
        return (1 - alphas[1:] / alphas[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {schedule!r} (linear, scaled_linear, cosine)")


def rescale_zero_terminal_snr(sigmas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024 ("Common Diffusion Noise Schedules and Sample Steps are Flawed", algorithm
    1) on a sigma table: sqrt(abar) shifted so its last entry is 0 and scaled so its first is
    unchanged. The last abar is then set to 4.8973451890853435e-08 (not 0: sigma would be
    infinite), ComfyUI's choice (diffusers' schedulers use 2^-24). Same dtype as ``sigmas``."""
    sqrt_abar = (1.0 / (sigmas * sigmas + 1.0)).sqrt()
    first, last = sqrt_abar[0].clone(), sqrt_abar[-1].clone()
    sqrt_abar = (sqrt_abar - last) * (first / (first - last))
    abar = sqrt_abar**2
    abar[-1] = ZSNR_LAST_ALPHA_BAR
    return ((1 - abar) / abar) ** 0.5


@dataclass(frozen=True)
class BetaSchedule:
    """The training schedule a sigma table is made from (make_betas' arguments)."""

    beta_schedule: str = "scaled_linear"
    linear_start: float = 0.00085
    linear_end: float = 0.012
    steps: int = 1000

    def betas(self) -> torch.Tensor:
        return make_betas(self.beta_schedule, self.steps, self.linear_start, self.linear_end)


@dataclass(frozen=True)
class ModelSampling:
    """Sigma table and parameterisation of a discrete-time model (1000 training steps)."""

    sigmas: torch.Tensor  # (T,) float32, increasing
    log_sigmas: torch.Tensor  # (T,) float32
    parameterization: str = "eps"  # "eps" | "v" | "x0" | "lcm"
    #: table entry i stands for training timestep i * skip_steps + skip_steps - 1 (LCM: 20)
    skip_steps: int = 1
    #: what the table was made from (``discrete`` rebuilds from it); None: SD's schedule
    schedule: BetaSchedule | None = None
    zsnr: bool = False
    #: the data's standard deviation in the preconditioning (1 but for EDM-trained models)
    sigma_data: float = 1.0

    @classmethod
    def from_betas(cls, betas: torch.Tensor, parameterization: str = "eps") -> ModelSampling:
        alphas_cumprod = torch.cumprod(1.0 - betas.double(), dim=0)  # float64
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5  # float64
        return cls(sigmas.float(), sigmas.log().float(), parameterization)

    @classmethod
    def sd1(cls) -> ModelSampling:
        """SD1.x (and SD2, SDXL): scaled_linear 0.00085..0.012, epsilon prediction."""
        return cls.discrete("eps")

    @classmethod
    def from_schedule(cls, beta_schedule: str = "scaled_linear", linear_start: float = 0.00085,
                      linear_end: float = 0.012, parameterization: str = "eps", steps: int = 1000) -> ModelSampling:
        """From a checkpoint config's beta schedule (``make_betas``) and parameterisation (eps or
        v: what checkpoint configs declare)."""
        if parameterization not in ("eps", "v"):
            raise ValueError(f"unknown parameterization {parameterization!r} (eps, v)")
        return cls.discrete(parameterization, schedule=BetaSchedule(beta_schedule, linear_start, linear_end, steps))

    @classmethod
    def discrete(cls, parameterization: str = "eps", zsnr: bool = False,
                 schedule: BetaSchedule | None = None) -> ModelSampling:
        """The sigma table of ``schedule`` (SD's by default) in float64, optionally rescaled to zero
        terminal SNR (``rescale_zero_terminal_snr``), stored as float32 with float32(log(float64)).
        ``lcm`` keeps every 20th entry of the float32 table (timesteps 19, 39, ... 999) with its
        float32 log (ComfyUI's ModelSamplingDiscreteDistilled)."""
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {parameterization!r} ({', '.join(PARAMETERIZATIONS)})")
        schedule = schedule or BetaSchedule()
        alphas_cumprod = torch.cumprod(1.0 - schedule.betas().double(), dim=0)  # float64
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5  # float64
        if zsnr:
            sigmas = rescale_zero_terminal_snr(sigmas)
        table, log_table = sigmas.float(), sigmas.log().float()
        skip = 1
        if parameterization == "lcm":
            skip = schedule.steps // LCM_ORIGINAL_STEPS
            table = table[skip - 1::skip].clone()  # entries 19, 39, ... 999
            log_table = table.log()
        return cls(table, log_table, parameterization, skip, schedule, zsnr)

    def with_parameterization(self, parameterization: str, zsnr: bool = False) -> ModelSampling:
        """A new table from this one's training schedule, for ``parameterization`` and ``zsnr``
        (ComfyUI's ModelSamplingDiscrete: rebuilt from the model's schedule, not this table)."""
        return ModelSampling.discrete(parameterization, zsnr, self.schedule)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """abar_t = 1 / (1 + sigma_t^2), (T,) float32."""
        return (1.0 / (1.0 + self.sigmas.double() ** 2)).float()

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The nearest training timestep in log-sigma, as a float: what the U-Net is given.

        The model call uses this rounded index, not ``fractional_timestep``, because that is what
        ComfyUI's discrete model sampling feeds an SD1.x U-Net (k-diffusion's DiscreteSchedule
        with quantize=True does the same). The network was trained on integer timesteps only, and
        its sinusoidal embedding of a fractional one is a different input: the images would no
        longer match ComfyUI's (shared/reference/comfyui-conventions.md, point 5).
        """
        log_sigma = sigma.float().log().to(self.log_sigmas.device)
        distance = (log_sigma[..., None] - self.log_sigmas).abs()  # (..., T)
        index = distance.argmin(dim=-1).float()
        if self.skip_steps != 1:
            index = index * self.skip_steps + (self.skip_steps - 1)
        return index.to(sigma.device).reshape(sigma.shape)

    def fractional_timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The continuous timestep of ``sigma``: linear interpolation in log-sigma between the two
        table entries around it, the inverse of ``sigma`` (Karras et al. 2022, "Elucidating the
        Design Space of Diffusion-Based Generative Models", which treats a discrete model as a
        continuous one; k-diffusion's DiscreteSchedule.sigma_to_t with quantize=False).

        Sigmas outside the table clamp to timestep 0 or T - 1. For schedules and reporting; the
        U-Net itself is given ``timestep`` (the nearest index), see there why.
        """
        log_sigma = sigma.float().log().to(self.log_sigmas.device).reshape(-1)  # (N,)
        table = self.log_sigmas  # (T,) increasing
        low = (torch.searchsorted(table, log_sigma, right=True) - 1).clamp(0, len(table) - 2)  # (N,)
        low_log, high_log = table[low], table[low + 1]
        w = ((low_log - log_sigma) / (low_log - high_log)).clamp(0, 1)
        index = (1 - w) * low + w * (low + 1)
        if self.skip_steps != 1:
            index = index * self.skip_steps + (self.skip_steps - 1)
        return index.to(sigma.device).reshape(sigma.shape)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sigma at a (fractional) timestep, interpolated in log-sigma."""
        t = timestep.float()
        if self.skip_steps != 1:
            t = (t - (self.skip_steps - 1)) / self.skip_steps
        t = t.clamp(0, len(self.sigmas) - 1)
        low, high = t.floor().long(), t.ceil().long()
        w = t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp()

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma at ``percent`` of the way through sampling (0 = the start, very noisy)."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * 999.0)))

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The network's input x / sqrt(sigma^2 + sigma_data^2) (z_t for sigma_data 1)."""
        return x / (_expand(sigma, x) ** 2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """z0 estimate: x - sigma eps (eps); c_skip x - c_out v (v, Salimans & Ho 2022) or
        c_skip x + c_out F (edm, Karras et al. 2022) with c_skip = d^2 / (sigma^2 + d^2), c_out =
        sigma d / sqrt(sigma^2 + d^2), d = sigma_data; the output itself (x0); or LCM's
        c_out (x - sigma eps) + c_skip x with c_skip = 0.25 / (s^2 + 0.25), c_out = s / sqrt(s^2 +
        0.25), s = 10 x the timestep (Luo et al. 2023, eq. 9 with sigma_data 0.5; applied to x, the
        variance-exploding latent, as ComfyUI's LCM sampling does)."""
        s = _expand(sigma, x)
        if self.parameterization in ("v", "edm"):
            data = self.sigma_data
            skip, out = x * data**2 / (s**2 + data**2), output * s * data / (s**2 + data**2) ** 0.5
            return skip - out if self.parameterization == "v" else skip + out
        if self.parameterization == "x0":
            return output
        if self.parameterization == "lcm":
            scaled_t = _expand(self.timestep(sigma), x) * LCM_TIMESTEP_SCALING
            c_skip = LCM_SIGMA_DATA**2 / (scaled_t**2 + LCM_SIGMA_DATA**2)
            c_out = scaled_t / (scaled_t**2 + LCM_SIGMA_DATA**2) ** 0.5
            return c_out * (x - output * s) + c_skip * x
        return x - output * s

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor,
                      max_denoise: bool) -> torch.Tensor:
        """The starting point: latent + noise * sigma, or latent + noise * sqrt(1 + sigma^2) at the
        top of the schedule (the latent is usually all zeros there)."""
        s = _expand(sigma, noise)
        if max_denoise:
            return latent + noise * (1.0 + s**2) ** 0.5
        return latent + noise * s

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The sampler's result as a latent: unchanged for eps and v models."""
        return latent


def _expand(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    return sigma.reshape(sigma.shape + (1,) * (like.ndim - sigma.ndim))
