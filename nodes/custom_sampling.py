"""ComfyUI's custom sampling nodes: samplers, schedulers, sigma edits, noise, guiders, and the two
samplers that put them together (SamplerCustom, SamplerCustomAdvanced). Ids, inputs, defaults and
outputs as in ComfyUI's nodes_custom_sampler / nodes_align_your_steps."""

from __future__ import annotations

import re

from nodeflow.spec import (CONDITIONING, FLOAT, GUIDER, LATENT, MODEL, NOISE, SAMPLER, SIGMAS, Boolean, Choice,
                           Float, Input, Int, Output, String, node)
from nodeflow.sampling.samplers import SAMPLER_NAMES
from nodeflow.sampling.schedulers import SCHEDULER_NAMES

SIGMA_MAX, SIGMA_MIN = 14.614642, 0.0291675  # SD's table ends, ComfyUI's defaults
NOISE_DEVICES = ["gpu", "cpu"]  # both draw on the CPU here (the same image on any device)


def _sampler(name: str, **options):
    from nodeflow.sampling.custom import SamplerChoice

    return (SamplerChoice(name, tuple(options.items())),)


def _eta(default: float = 1.0):
    return Float("eta", default, min=0.0, max=100.0, step=0.01)


def _s_noise():
    return Float("s_noise", 1.0, min=0.0, max=100.0, step=0.01)


def _steps(default: int = 20, max: int = 10000):
    return Int("steps", default, min=1, max=max)


def _sigma_range():
    return [Float("sigma_max", SIGMA_MAX, min=0.0, max=5000.0, step=0.01),
            Float("sigma_min", SIGMA_MIN, min=0.0, max=5000.0, step=0.01)]


# ---- samplers

@node("KSamplerSelect", category="sampling/custom_sampling/samplers",
      inputs=[Choice("sampler_name", list(SAMPLER_NAMES))], outputs=[Output(SAMPLER)])
def ksampler_select(sampler_name: str):
    """One of KSampler's samplers, with its default options."""
    return _sampler(sampler_name)


@node("SamplerEulerAncestral", category="sampling/custom_sampling/samplers",
      inputs=[_eta(), _s_noise()], outputs=[Output(SAMPLER)])
def sampler_euler_ancestral(eta: float, s_noise: float):
    """Euler ancestral with its noise amount (eta) and scale (s_noise)."""
    return _sampler("euler_ancestral", eta=eta, s_noise=s_noise)


@node("SamplerDPMPP_2S_Ancestral", category="sampling/custom_sampling/samplers",
      inputs=[_eta(), _s_noise()], outputs=[Output(SAMPLER)])
def sampler_dpmpp_2s_ancestral(eta: float, s_noise: float):
    """DPM++ 2S ancestral with its options."""
    return _sampler("dpmpp_2s_ancestral", eta=eta, s_noise=s_noise)


@node("SamplerDPMPP_SDE", category="sampling/custom_sampling/samplers",
      inputs=[_eta(), _s_noise(), Float("r", 0.5, min=0.0, max=100.0, step=0.01), Choice("noise_device", NOISE_DEVICES)],
      outputs=[Output(SAMPLER)])
def sampler_dpmpp_sde(eta: float, s_noise: float, r: float, noise_device: str):
    """DPM++ SDE with its options (both noise devices draw on the CPU)."""
    return _sampler("dpmpp_sde", eta=eta, s_noise=s_noise, r=r)


@node("SamplerDPMPP_2M_SDE", category="sampling/custom_sampling/samplers",
      inputs=[Choice("solver_type", ["midpoint", "heun"]), _eta(), _s_noise(), Choice("noise_device", NOISE_DEVICES)],
      outputs=[Output(SAMPLER)])
def sampler_dpmpp_2m_sde(solver_type: str, eta: float, s_noise: float, noise_device: str):
    """DPM++ 2M SDE with its correction (midpoint or heun) and options."""
    return _sampler("dpmpp_2m_sde", eta=eta, s_noise=s_noise, solver_type=solver_type)


@node("SamplerDPMPP_3M_SDE", category="sampling/custom_sampling/samplers",
      inputs=[_eta(), _s_noise(), Choice("noise_device", NOISE_DEVICES)], outputs=[Output(SAMPLER)])
def sampler_dpmpp_3m_sde(eta: float, s_noise: float, noise_device: str):
    """DPM++ 3M SDE with its options."""
    return _sampler("dpmpp_3m_sde", eta=eta, s_noise=s_noise)


@node("SamplerLMS", category="sampling/custom_sampling/samplers",
      inputs=[Int("order", 4, min=1, max=100)], outputs=[Output(SAMPLER)])
def sampler_lms(order: int):
    """LMS of the given order."""
    return _sampler("lms", order=order)


@node("SamplerDPMAdaptative", category="sampling/custom_sampling/samplers",
      inputs=[Int("order", 3, min=2, max=3), Float("rtol", 0.05, min=0.0, max=100.0),
              Float("atol", 0.0078, min=0.0, max=100.0), Float("h_init", 0.05, min=0.0, max=100.0),
              Float("pcoeff", 0.0, min=0.0, max=100.0), Float("icoeff", 1.0, min=0.0, max=100.0),
              Float("dcoeff", 0.0, min=0.0, max=100.0), Float("accept_safety", 0.81, min=0.0, max=100.0),
              _eta(0.0), _s_noise()],
      outputs=[Output(SAMPLER)])
def sampler_dpm_adaptative(order: int, rtol: float, atol: float, h_init: float, pcoeff: float, icoeff: float,
                           dcoeff: float, accept_safety: float, eta: float, s_noise: float):
    """DPM adaptive with its step-size controller's settings."""
    return _sampler("dpm_adaptive", order=order, rtol=rtol, atol=atol, h_init=h_init, pcoeff=pcoeff, icoeff=icoeff,
                    dcoeff=dcoeff, accept_safety=accept_safety, eta=eta, s_noise=s_noise)


@node("SamplerEulerAncestralCFGPP", display="SamplerEulerAncestralCFG++", category="sampling/custom_sampling/samplers",
      inputs=[Float("eta", 1.0, min=0.0, max=1.0, step=0.01), Float("s_noise", 1.0, min=0.0, max=10.0, step=0.01)],
      outputs=[Output(SAMPLER)])
def sampler_euler_ancestral_cfg_pp(eta: float, s_noise: float):
    """Euler ancestral CFG++ with its options."""
    return _sampler("euler_ancestral_cfg_pp", eta=eta, s_noise=s_noise)


class ReverseTimeNoiseScaler:
    """ER-SDE's noise scale for a reverse-time SDE of strength eta: x^(eta + 1)."""

    def __init__(self, eta: float) -> None:
        self.eta = eta

    def __call__(self, x):
        return x ** (self.eta + 1)


@node("SamplerER_SDE", category="sampling/custom_sampling/samplers",
      inputs=[Choice("solver_type", ["ER-SDE", "Reverse-time SDE", "ODE"]), Int("max_stage", 3, min=1, max=3),
              _eta(), _s_noise()],
      outputs=[Output(SAMPLER)])
def sampler_er_sde(solver_type: str, max_stage: int, eta: float, s_noise: float):
    """ER-SDE: its own noise scale (ER-SDE), a reverse-time SDE of strength eta, or the ODE."""
    if solver_type == "ODE" or (solver_type == "Reverse-time SDE" and eta == 0):
        eta, s_noise = 0.0, 0.0
    scaler = None if solver_type == "ER-SDE" else ReverseTimeNoiseScaler(eta)
    return _sampler("er_sde", s_noise=s_noise, noise_scaler=scaler, max_stage=max_stage)


@node("SamplerSEEDS2", category="sampling/custom_sampling/samplers",
      inputs=[Choice("solver_type", ["phi_1", "phi_2"]), _eta(), _s_noise(),
              Float("r", 0.5, min=0.01, max=1.0, step=0.01)],
      outputs=[Output(SAMPLER)])
def sampler_seeds_2(solver_type: str, eta: float, s_noise: float, r: float):
    """SEEDS-2 (phi_2, r 1, eta 0: exponential Heun)."""
    return _sampler("seeds_2", eta=eta, s_noise=s_noise, r=r, solver_type=solver_type)


@node("SamplerSASolver", category="sampling/custom_sampling/samplers",
      inputs=[Input("model", MODEL), Float("eta", 1.0, min=0.0, max=10.0, step=0.01),
              Float("sde_start_percent", 0.2, min=0.0, max=1.0, step=0.001),
              Float("sde_end_percent", 0.8, min=0.0, max=1.0, step=0.001), _s_noise(),
              Int("predictor_order", 3, min=1, max=6), Int("corrector_order", 4, min=0, max=6),
              Boolean("use_pece", False), Boolean("simple_order_2", False)],
      outputs=[Output(SAMPLER)])
def sampler_sa_solver(model, eta: float, sde_start_percent: float, sde_end_percent: float, s_noise: float,
                      predictor_order: int, corrector_order: int, use_pece: bool, simple_order_2: bool):
    """SA-Solver, stochastic (eta) between the model's sigmas at sde_start_percent and sde_end_percent
    of the way through sampling, with its predictor and corrector orders."""
    from nodeflow.sampling.samplers_sa_solver import TauInterval

    sampling = model.sampling
    tau = TauInterval(sampling.percent_to_sigma(sde_start_percent), sampling.percent_to_sigma(sde_end_percent), eta)
    return _sampler("sa_solver", tau_func=tau, s_noise=s_noise, predictor_order=predictor_order,
                    corrector_order=corrector_order, use_pece=use_pece, simple_order_2=simple_order_2)


# ---- schedulers

@node("BasicScheduler", category="sampling/custom_sampling/schedulers",
      inputs=[Input("model", MODEL), Choice("scheduler", list(SCHEDULER_NAMES)), _steps(),
              Float("denoise", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output(SIGMAS)])
def basic_scheduler(model, scheduler: str, steps: int, denoise: float):
    """KSampler's schedule for the model: the last steps + 1 sigmas of int(steps / denoise) steps."""
    import torch

    from nodeflow.sampling.schedulers import compute_sigmas

    if denoise <= 0.0:
        return (torch.zeros(0),)
    total = steps if denoise >= 1.0 else int(steps / denoise)
    return (compute_sigmas(model.sampling, scheduler, total)[-(steps + 1):],)


@node("KarrasScheduler", category="sampling/custom_sampling/schedulers",
      inputs=[_steps(), *_sigma_range(), Float("rho", 7.0, min=0.0, max=100.0, step=0.01)], outputs=[Output(SIGMAS)])
def karras_scheduler(steps: int, sigma_max: float, sigma_min: float, rho: float):
    """Karras et al.'s schedule between sigma_max and sigma_min."""
    from nodeflow.sampling import custom_schedules

    return (custom_schedules.karras(steps, sigma_min, sigma_max, rho),)


@node("ExponentialScheduler", category="sampling/custom_sampling/schedulers",
      inputs=[_steps(), *_sigma_range()], outputs=[Output(SIGMAS)])
def exponential_scheduler(steps: int, sigma_max: float, sigma_min: float):
    """Sigmas evenly spaced in log-sigma."""
    from nodeflow.sampling import custom_schedules

    return (custom_schedules.exponential(steps, sigma_min, sigma_max),)


@node("PolyexponentialScheduler", category="sampling/custom_sampling/schedulers",
      inputs=[_steps(), *_sigma_range(), Float("rho", 1.0, min=0.0, max=100.0, step=0.01)], outputs=[Output(SIGMAS)])
def polyexponential_scheduler(steps: int, sigma_max: float, sigma_min: float, rho: float):
    """Log-sigma a polynomial of the step (rho 1: exponential)."""
    from nodeflow.sampling import custom_schedules

    return (custom_schedules.polyexponential(steps, sigma_min, sigma_max, rho),)


@node("LaplaceScheduler", category="sampling/custom_sampling/schedulers",
      inputs=[_steps(), *_sigma_range(), Float("mu", 0.0, min=-10.0, max=10.0, step=0.1),
              Float("beta", 0.5, min=0.0, max=10.0, step=0.1)],
      outputs=[Output(SIGMAS)])
def laplace_scheduler(steps: int, sigma_max: float, sigma_min: float, mu: float, beta: float):
    """Laplace-distributed log-sigmas (no final 0, as in ComfyUI)."""
    from nodeflow.sampling import custom_schedules

    return (custom_schedules.laplace(steps, sigma_min, sigma_max, mu, beta),)


@node("VPScheduler", category="sampling/custom_sampling/schedulers",
      inputs=[_steps(), Float("beta_d", 19.9, min=0.0, max=5000.0), Float("beta_min", 0.1, min=0.0, max=5000.0),
              Float("eps_s", 0.001, min=0.0, max=1.0, step=0.0001)],
      outputs=[Output(SIGMAS)])
def vp_scheduler(steps: int, beta_d: float, beta_min: float, eps_s: float):
    """The continuous VP schedule."""
    from nodeflow.sampling import custom_schedules

    return (custom_schedules.vp(steps, beta_d, beta_min, eps_s),)


@node("BetaSamplingScheduler", category="sampling/custom_sampling/schedulers",
      inputs=[Input("model", MODEL), _steps(), Float("alpha", 0.6, min=0.0, max=50.0),
              Float("beta", 0.6, min=0.0, max=50.0)],
      outputs=[Output(SIGMAS)])
def beta_sampling_scheduler(model, steps: int, alpha: float, beta: float):
    """The beta scheduler with its two shape parameters."""
    from nodeflow.sampling.schedulers import beta as beta_schedule

    return (beta_schedule(model.sampling, steps, alpha, beta),)


@node("SDTurboScheduler", category="sampling/custom_sampling/schedulers",
      inputs=[Input("model", MODEL), _steps(1, max=10), Float("denoise", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output(SIGMAS)])
def sd_turbo_scheduler(model, steps: int, denoise: float):
    """SD/SDXL Turbo's schedule: timesteps 999, 899, ... from the model's table."""
    from nodeflow.sampling import custom_schedules

    return (custom_schedules.sd_turbo(model.sampling, steps, denoise),)


@node("AlignYourStepsScheduler", category="sampling/custom_sampling/schedulers",
      inputs=[Choice("model_type", ["SD1", "SDXL", "SVD"]), _steps(10), Float("denoise", 1.0, min=0.0, max=1.0)],
      outputs=[Output(SIGMAS)])
def align_your_steps_scheduler(model_type: str, steps: int, denoise: float):
    """NVIDIA's Align Your Steps schedules, interpolated to ``steps``."""
    from nodeflow.sampling import custom_schedules

    return (custom_schedules.align_your_steps(model_type, steps, denoise),)


@node("GITSScheduler", category="sampling/custom_sampling/schedulers",
      inputs=[Float("coeff", 1.20, min=0.80, max=1.50, step=0.05), Int("steps", 10, min=2, max=1000),
              Float("denoise", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output(SIGMAS)])
def gits_scheduler(coeff: float, steps: int, denoise: float):
    """GITS's searched schedules for SD (coeff: 0.80 .. 1.50 in steps of 0.05), interpolated above 20 steps."""
    from nodeflow.errors import NodeInputError
    from nodeflow.sampling import custom_schedules

    if denoise > 0.0 and round(coeff, 2) not in custom_schedules.GITS_SCHEDULES:
        known = ", ".join(f"{c:.2f}" for c in custom_schedules.GITS_SCHEDULES)
        raise NodeInputError("coeff", f"GITS has schedules for {known}, not {coeff}")
    return (custom_schedules.gits(coeff, steps, denoise),)


# ---- sigma lists

@node("SplitSigmas", category="sampling/custom_sampling/sigmas",
      inputs=[Input("sigmas", SIGMAS), Int("step", 0, min=0, max=10000)],
      outputs=[Output(SIGMAS, "high_sigmas"), Output(SIGMAS, "low_sigmas")])
def split_sigmas(sigmas, step: int):
    """The schedule up to ``step`` and from it (both hold that step's sigma)."""
    from nodeflow.sampling import custom_schedules

    return custom_schedules.split(sigmas, step)


@node("SplitSigmasDenoise", category="sampling/custom_sampling/sigmas",
      inputs=[Input("sigmas", SIGMAS), Float("denoise", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output(SIGMAS, "high_sigmas"), Output(SIGMAS, "low_sigmas")])
def split_sigmas_denoise(sigmas, denoise: float):
    """The schedule split so that the low part is ``denoise`` of the steps."""
    from nodeflow.sampling import custom_schedules

    return custom_schedules.split_denoise(sigmas, denoise)


@node("FlipSigmas", category="sampling/custom_sampling/sigmas", inputs=[Input("sigmas", SIGMAS)],
      outputs=[Output(SIGMAS)])
def flip_sigmas(sigmas):
    """The schedule reversed (from clean to noisy: unsampling)."""
    from nodeflow.sampling import custom_schedules

    return (custom_schedules.flip(sigmas),)


@node("SetFirstSigma", category="sampling/custom_sampling/sigmas",
      inputs=[Input("sigmas", SIGMAS), Float("sigma", 136.0, min=0.0, max=20000.0, step=0.001)],
      outputs=[Output(SIGMAS)])
def set_first_sigma(sigmas, sigma: float):
    """The schedule with its first sigma replaced."""
    from nodeflow.sampling import custom_schedules

    _need_sigmas(sigmas, 1)
    return (custom_schedules.set_first(sigmas, sigma),)


@node("ExtendIntermediateSigmas", category="sampling/custom_sampling/sigmas",
      inputs=[Input("sigmas", SIGMAS), Int("steps", 2, min=1, max=100),
              Float("start_at_sigma", -1.0, min=-1.0, max=20000.0), Float("end_at_sigma", 12.0, min=0.0, max=20000.0),
              Choice("spacing", ["linear", "cosine", "sine"])],
      outputs=[Output(SIGMAS)])
def extend_intermediate_sigmas(sigmas, steps: int, start_at_sigma: float, end_at_sigma: float, spacing: str):
    """More sigmas inside the steps between start_at_sigma and end_at_sigma."""
    from nodeflow.sampling import custom_schedules

    return (custom_schedules.extend_intermediate(sigmas, steps, start_at_sigma, end_at_sigma, spacing),)


@node("SamplingPercentToSigma", category="sampling/custom_sampling/sigmas",
      inputs=[Input("model", MODEL), Float("sampling_percent", 0.0, min=0.0, max=1.0, step=0.0001),
              Boolean("return_actual_sigma", False)],
      outputs=[Output(FLOAT, "sigma_value")])
def sampling_percent_to_sigma(model, sampling_percent: float, return_actual_sigma: bool):
    """The model's sigma at a fraction of the way through sampling."""
    sampling = model.sampling
    if return_actual_sigma and sampling_percent == 0.0:
        return (float(sampling.sigma_max),)
    if return_actual_sigma and sampling_percent == 1.0:
        return (float(sampling.sigma_min),)
    return (sampling.percent_to_sigma(sampling_percent),)


@node("ManualSigmas", category="sampling/custom_sampling/sigmas", inputs=[String("sigmas", "1, 0.5")],
      outputs=[Output(SIGMAS)])
def manual_sigmas(sigmas: str):
    """A schedule typed as numbers."""
    import torch

    return (torch.tensor([float(v) for v in re.findall(r"[-+]?(?:\d*\.*\d+)", sigmas)], dtype=torch.float32),)


# ---- noise and guiders

@node("RandomNoise", category="sampling/custom_sampling/noise",
      inputs=[Int("noise_seed", 0, seed=True)], outputs=[Output(NOISE)])
def random_noise(noise_seed: int):
    """Initial noise from a seed (ComfyUI's CPU noise)."""
    from nodeflow.sampling.custom import Noise

    return (Noise(noise_seed),)


@node("DisableNoise", category="sampling/custom_sampling/noise", inputs=[], outputs=[Output(NOISE)])
def disable_noise():
    """No initial noise (continue from a latent that already has it)."""
    from nodeflow.sampling.custom import Noise

    return (Noise(0, enabled=False),)


@node("CFGGuider", category="sampling/custom_sampling/guiders",
      inputs=[Input("model", MODEL), Input("positive", CONDITIONING), Input("negative", CONDITIONING),
              Float("cfg", 8.0, min=0.0, max=100.0, step=0.1)],
      outputs=[Output(GUIDER)])
def cfg_guider(model, positive: list, negative: list, cfg: float):
    """Classifier-free guidance, as KSampler's."""
    from nodeflow.sampling.custom import Guider

    return (Guider(model, (positive, negative), cfg),)


@node("BasicGuider", category="sampling/custom_sampling/guiders",
      inputs=[Input("model", MODEL), Input("conditioning", CONDITIONING)], outputs=[Output(GUIDER)])
def basic_guider(model, conditioning: list):
    """The model's prediction for one conditioning (no negative: guidance-distilled models)."""
    from nodeflow.sampling.custom import Guider

    return (Guider(model, (conditioning,)),)


@node("DualCFGGuider", category="sampling/custom_sampling/guiders",
      inputs=[Input("model", MODEL), Input("cond1", CONDITIONING), Input("cond2", CONDITIONING),
              Input("negative", CONDITIONING), Float("cfg_conds", 8.0, min=0.0, max=100.0, step=0.1),
              Float("cfg_cond2_negative", 8.0, min=0.0, max=100.0, step=0.1), Choice("style", ["regular", "nested"])],
      outputs=[Output(GUIDER)])
def dual_cfg_guider(model, cond1: list, cond2: list, negative: list, cfg_conds: float, cfg_cond2_negative: float,
                    style: str):
    """Guidance towards cond1 from cond2 and towards cond2 from the negative."""
    from nodeflow.sampling.custom import Guider

    return (Guider(model, (cond1, cond2, negative), cfg_conds, cfg_cond2_negative, f"dual-{style}"),)


@node("PerpNegGuider", category="_for_testing",
      inputs=[Input("model", MODEL), Input("positive", CONDITIONING), Input("negative", CONDITIONING),
              Input("empty_conditioning", CONDITIONING, tooltip="The empty prompt's conditioning"),
              Float("cfg", 8.0, min=0.0, max=100.0, step=0.1),
              Float("neg_scale", 1.0, min=0.0, max=100.0, step=0.01,
                    tooltip="How strongly to push away from the negative prompt's part unlike the positive")],
      outputs=[Output(GUIDER)])
def perp_neg_guider(model, positive: list, negative: list, empty_conditioning: list, cfg: float, neg_scale: float):
    """Guidance away from only the part of the negative prompt that the positive one does not share."""
    from nodeflow.sampling.custom import Guider

    return (Guider(model, (positive, negative, empty_conditioning), cfg, neg_scale, "perp-neg"),)


# ---- sampling

def _need_sigmas(sigmas, at_least: int) -> None:
    from nodeflow.errors import NodeInputError
    from nodeflow.sampling.custom import check_sigmas

    problem = check_sigmas(sigmas)
    if problem is None and len(sigmas) < at_least:
        problem = f"the schedule is empty: it needs at least {at_least} sigma{'s' if at_least > 1 else ''}"
    if problem:
        raise NodeInputError("sigmas", problem)


def _sample(ctx, model, guidance, sampler, sigmas, latent: dict, noise, seed: int):
    from nodeflow.sampling.ksampler import run_sampler
    from nodeflow.sampling.latent_preview import progress_reporter

    _need_sigmas(sigmas, 1)
    ctx.check_cancel()
    return run_sampler(model, guidance, sampler, sigmas, latent, noise.generate(latent), seed,
                       callback=progress_reporter(ctx, model.latent_format), check_cancel=ctx.check_cancel)


@node("SamplerCustom", category="sampling/custom_sampling",
      inputs=[Input("model", MODEL), Boolean("add_noise", True), Int("noise_seed", 0, seed=True),
              Float("cfg", 8.0, min=0.0, max=100.0, step=0.1), Input("positive", CONDITIONING),
              Input("negative", CONDITIONING), Input("sampler", SAMPLER), Input("sigmas", SIGMAS),
              Input("latent_image", LATENT)],
      outputs=[Output(LATENT, "output"), Output(LATENT, "denoised_output")])
def sampler_custom(model, add_noise: bool, noise_seed: int, cfg: float, positive: list, negative: list, sampler,
                   sigmas, latent_image: dict, ctx):
    """Sample with a chosen sampler over a given schedule; also the model's last clean estimate."""
    from nodeflow.sampling.custom import Guider, Noise

    guider = Guider(model, (positive, negative), cfg)
    return _sample(ctx, model, guider.denoiser, sampler, sigmas, latent_image, Noise(noise_seed, add_noise),
                   noise_seed)


@node("SamplerCustomAdvanced", category="sampling/custom_sampling",
      inputs=[Input("noise", NOISE), Input("guider", GUIDER), Input("sampler", SAMPLER), Input("sigmas", SIGMAS),
              Input("latent_image", LATENT)],
      outputs=[Output(LATENT, "output"), Output(LATENT, "denoised_output")])
def sampler_custom_advanced(noise, guider, sampler, sigmas, latent_image: dict, ctx):
    """Sample with separate noise, guider, sampler and schedule nodes."""
    return _sample(ctx, guider.model, guider.denoiser, sampler, sigmas, latent_image, noise, noise.seed)


@node("AddNoise", category="sampling/custom_sampling/noise",
      inputs=[Input("model", MODEL), Input("noise", NOISE), Input("sigmas", SIGMAS), Input("latent_image", LATENT)],
      outputs=[Output(LATENT)])
def add_noise(model, noise, sigmas, latent_image: dict):
    """The latent with noise of the schedule's span (first minus last sigma) added."""
    import torch

    if len(sigmas) == 0:
        return (latent_image,)
    samples = latent_image["samples"].float()
    scale = (sigmas[0] - sigmas[-1]).abs() if len(sigmas) > 1 else sigmas[0]
    source = model.latent_format.process_in(samples) if torch.count_nonzero(samples) > 0 else samples
    noisy = model.sampling.noise_scaling(scale, noise.generate(latent_image), source, max_denoise=False)
    out = dict(latent_image)
    out["samples"] = torch.nan_to_num(model.latent_format.process_out(noisy), nan=0.0, posinf=0.0, neginf=0.0)
    return (out,)
