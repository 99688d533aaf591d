"""Samplers: equal to k-diffusion's with the same noise; analytic checks on Gaussian data."""

import math

import pytest
import torch

from nodeflow.sampling.noise import NoiseSource
from nodeflow.sampling.samplers import SAMPLERS, STOCHASTIC
from nodeflow.sampling.schedulers import karras
from nodeflow.sampling.schedules import ModelSampling
from tests.kdiffusion_ref import load_sampling

MU, S = 0.5, 0.7  # data distribution N(MU, S^2)


def gaussian_denoiser(x, sigma):
    """The exact denoiser E[x0 | x] for x0 ~ N(MU, S^2), x = x0 + sigma eps."""
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return (S**2 * x + s2 * MU) / (S**2 + s2)


def toy_denoiser(x, sigma):
    """A smooth non-linear denoiser to tell methods apart."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return torch.tanh(x / (1 + s)) * 0.8 + 0.1 * torch.sin(3 * x) / (1 + s**2)


class ListNoise:
    """The same sequence of noise tensors for ours (NoiseSource API) and k-diffusion's
    noise_sampler(sigma, sigma_next)."""

    def __init__(self, shape, seed=3):
        generator = torch.Generator().manual_seed(seed)
        self.values = [torch.randn(shape, generator=generator) for _ in range(200)]
        self.used = 0

    def _next(self):
        self.used += 1
        return self.values[self.used - 1]

    def step(self, x):
        return self._next()

    def brownian(self, x, sigmas, sigma, sigma_next):
        return self._next()

    def __call__(self, sigma, sigma_next):
        return self._next()


REFERENCE_NAMES = {
    "euler": "sample_euler", "euler_ancestral": "sample_euler_ancestral", "heun": "sample_heun",
    "dpm_2": "sample_dpm_2", "dpm_2_ancestral": "sample_dpm_2_ancestral", "lms": "sample_lms",
    "dpmpp_2s_ancestral": "sample_dpmpp_2s_ancestral", "dpmpp_sde": "sample_dpmpp_sde",
    "dpmpp_2m": "sample_dpmpp_2m", "dpmpp_2m_sde": "sample_dpmpp_2m_sde",
    "dpmpp_3m_sde": "sample_dpmpp_3m_sde",
}


@pytest.mark.parametrize("name", sorted(REFERENCE_NAMES))
def test_matches_k_diffusion(name):
    reference = getattr(load_sampling(), REFERENCE_NAMES[name])
    sigmas = karras(ModelSampling.sd1(), 12)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    ours_noise, their_noise = ListNoise(x.shape), ListNoise(x.shape)
    got = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=ours_noise)
    kwargs = {"noise_sampler": their_noise} if name in STOCHASTIC else {}
    expected = reference(lambda x, sigma: toy_denoiser(x, sigma), x.clone(), sigmas,
                         disable=True, **kwargs)
    assert ours_noise.used == their_noise.used
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-5


def exact_ode_solution(x_start, sigma_start):
    """The probability-flow ODE for Gaussian data maps x to MU + (x - MU) S / sqrt(S^2 + sigma^2)."""
    return MU + (x_start - MU) * S / math.sqrt(S**2 + sigma_start**2)


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ipndm", "ddim"])
def test_deterministic_samplers_solve_the_ode(name):
    sigmas = karras(ModelSampling.sd1(), 60)
    x = torch.linspace(-3, 3, 11) * float(sigmas[0])
    got = SAMPLERS[name](gaussian_denoiser, x.clone(), sigmas, noise=None)
    expected = exact_ode_solution(x, float(sigmas[0]))
    tolerance = 0.1 if name in ("euler", "ddim") else 0.01  # first order vs higher orders
    assert float((got - expected).abs().max()) < tolerance


@pytest.mark.parametrize("name", sorted(STOCHASTIC - {"lcm"}))
def test_stochastic_samplers_reach_the_data_distribution(name):
    first_order = name in ("euler_ancestral", "ddpm")
    sigmas = karras(ModelSampling.sd1(), 120 if first_order else 30)
    x = torch.randn(20000, generator=torch.Generator().manual_seed(1)) * float(sigmas[0])
    got = SAMPLERS[name](gaussian_denoiser, x, sigmas, noise=NoiseSource(5))
    assert abs(float(got.mean()) - MU) < 0.03
    assert abs(float(got.std()) - S) < 0.05


def test_lcm_follows_its_variance_recursion():
    """x_{i+1} = D(x_i) + sigma_{i+1} z: with the exact Gaussian denoiser the variance obeys
    v' = (S^2 / (S^2 + sigma^2))^2 v + sigma_next^2, the last step returning D(x)."""
    sigmas = karras(ModelSampling.sd1(), 6)
    x = torch.randn(40000, generator=torch.Generator().manual_seed(1)) * float(sigmas[0])
    variance = float(sigmas[0]) ** 2
    for sigma, sigma_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        variance = (S**2 / (S**2 + sigma**2)) ** 2 * variance + sigma_next**2
    got = SAMPLERS["lcm"](gaussian_denoiser, x, sigmas, noise=NoiseSource(5))
    assert abs(float(got.std()) - variance**0.5) < 0.01
    assert abs(float(got.mean()) - MU) < 0.02


@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_same_seed_same_result(name):
    sigmas = karras(ModelSampling.sd1(), 8)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * float(sigmas[0])
    a = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(9))
    b = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(9))
    c = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(10))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_callback_reports_every_step():
    seen = []
    sigmas = karras(ModelSampling.sd1(), 5)
    SAMPLERS["heun"](toy_denoiser, torch.zeros(1, 4, 2, 2) + 3, sigmas,
                     callback=lambda step, total, x, d: seen.append((step, total)))
    assert seen == [(i, 5) for i in range(5)]
