"""Samplers under ComfyUI's names, each a function over a denoiser (k-diffusion's contract).

``sampler(denoise, x, sigmas, *, noise, callback) -> x`` where ``denoise(x, sigma)`` returns the
model's estimate of the clean latent at noise level ``sigma`` (a (B,) tensor), ``x`` starts at
``sigmas[0]`` and the result is at ``sigmas[-1]`` (0: clean). ``noise`` is a ``NoiseSource``
(stochastic samplers draw from it, so one seed gives one image); ``callback(step, total, x,
denoised)`` is called once per step with the step's first model estimate.

The methods live in samplers_ode (single-step ODE), samplers_dpm_solver (dpm_fast/adaptive),
samplers_multistep, samplers_unipc, samplers_stochastic (ancestral and SDE) and samplers_sa_solver.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nodeflow.sampling.samplers_cfg_pp import (sample_dpmpp_2m_cfg_pp, sample_dpmpp_2s_ancestral_cfg_pp,
                                                sample_euler_ancestral_cfg_pp, sample_euler_cfg_pp,
                                                sample_gradient_estimation, sample_gradient_estimation_cfg_pp,
                                                sample_res_multistep, sample_res_multistep_ancestral,
                                                sample_res_multistep_ancestral_cfg_pp, sample_res_multistep_cfg_pp)
from nodeflow.sampling.samplers_common import ancestral_step  # noqa: F401  (re-exported)
from nodeflow.sampling.samplers_dpm_solver import sample_dpm_adaptive, sample_dpm_fast
from nodeflow.sampling.samplers_multistep import (sample_deis, sample_dpmpp_2m, sample_ipndm, sample_ipndm_v,
                                                 sample_lms)
from nodeflow.sampling.samplers_ode import sample_ddim, sample_dpm_2, sample_euler, sample_heun, sample_heunpp2
from nodeflow.sampling.samplers_sa_solver import sample_sa_solver, sample_sa_solver_pece
from nodeflow.sampling.samplers_stochastic import (sample_ddpm, sample_dpm_2_ancestral, sample_dpmpp_2m_sde,
                                                   sample_dpmpp_2m_sde_heun, sample_dpmpp_2s_ancestral,
                                                   sample_dpmpp_3m_sde, sample_dpmpp_sde, sample_er_sde,
                                                   sample_euler_ancestral, sample_exp_heun_2_x0,
                                                   sample_exp_heun_2_x0_sde, sample_lcm, sample_seeds_2,
                                                   sample_seeds_3)
from nodeflow.sampling.samplers_unipc import sample_uni_pc, sample_uni_pc_bh2

Sampler = Callable[..., torch.Tensor]

#: Name -> sampler, in the order of ComfyUI's KSampler list (its SAMPLER_NAMES; its *_gpu names are
#: read as the samplers they are, see nodeflow.formats.comfy.SAMPLER_ALIASES).
SAMPLERS: dict[str, Sampler] = {
    "euler": sample_euler,
    "euler_cfg_pp": sample_euler_cfg_pp,
    "euler_ancestral": sample_euler_ancestral,
    "euler_ancestral_cfg_pp": sample_euler_ancestral_cfg_pp,
    "heun": sample_heun,
    "heunpp2": sample_heunpp2,
    "exp_heun_2_x0": sample_exp_heun_2_x0,
    "exp_heun_2_x0_sde": sample_exp_heun_2_x0_sde,
    "dpm_2": sample_dpm_2,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "lms": sample_lms,
    "dpm_fast": sample_dpm_fast,
    "dpm_adaptive": sample_dpm_adaptive,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_2s_ancestral_cfg_pp": sample_dpmpp_2s_ancestral_cfg_pp,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_cfg_pp": sample_dpmpp_2m_cfg_pp,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_heun": sample_dpmpp_2m_sde_heun,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "ddpm": sample_ddpm,
    "lcm": sample_lcm,
    "ipndm": sample_ipndm,
    "ipndm_v": sample_ipndm_v,
    "deis": sample_deis,
    "res_multistep": sample_res_multistep,
    "res_multistep_cfg_pp": sample_res_multistep_cfg_pp,
    "res_multistep_ancestral": sample_res_multistep_ancestral,
    "res_multistep_ancestral_cfg_pp": sample_res_multistep_ancestral_cfg_pp,
    "gradient_estimation": sample_gradient_estimation,
    "gradient_estimation_cfg_pp": sample_gradient_estimation_cfg_pp,
    "er_sde": sample_er_sde,
    "seeds_2": sample_seeds_2,
    "seeds_3": sample_seeds_3,
    "sa_solver": sample_sa_solver,
    "sa_solver_pece": sample_sa_solver_pece,
    "ddim": sample_ddim,  # deterministic DDIM: the Euler step in sigma, as in ComfyUI
    "uni_pc": sample_uni_pc,
    "uni_pc_bh2": sample_uni_pc_bh2,
}
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)

#: Samplers whose result depends on the noise source.
STOCHASTIC = frozenset({"euler_ancestral", "euler_ancestral_cfg_pp", "dpm_2_ancestral", "dpmpp_2s_ancestral",
                        "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde",
                        "ddpm", "lcm", "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "er_sde",
                        "exp_heun_2_x0_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece"})

#: Samplers that ComfyUI runs on a schedule of steps + 1 with the penultimate sigma dropped.
DISCARD_PENULTIMATE = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


def get_sampler(name: str) -> Sampler:
    """The sampler called ``name``; ValueError listing the known names otherwise."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; one of {', '.join(SAMPLERS)}") from None
