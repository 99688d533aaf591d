"""The discrete training schedule (ModelSampling) against diffusers and closed forms."""

import pytest
import torch

from nodeflow.sampling.model_sampling import ModelSampling, make_betas


@pytest.mark.parametrize("schedule, diffusers_name", [("scaled_linear", "scaled_linear"), ("linear", "linear"),
                                                      ("cosine", "squaredcos_cap_v2")])
def test_alphas_cumprod_equal_diffusers(schedule, diffusers_name):
    diffusers = pytest.importorskip("diffusers")
    reference = diffusers.DDPMScheduler(beta_schedule=diffusers_name, beta_start=0.00085, beta_end=0.012)
    ours = ModelSampling.from_schedule(schedule)
    assert torch.allclose(ours.alphas_cumprod.double(), reference.alphas_cumprod.double(), rtol=1e-5, atol=1e-7)


def test_sd1_table_is_computed_in_float64_then_stored_in_float32():
    ms = ModelSampling.sd1()
    alphas_cumprod = torch.cumprod(1 - make_betas("scaled_linear"), 0)  # float64
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    assert ms.sigmas.dtype == torch.float32 and torch.equal(ms.sigmas, sigmas.float())
    assert torch.equal(ms.log_sigmas, sigmas.log().float())


def test_eps_input_and_denoised():
    ms = ModelSampling.sd1()
    x0, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([0.5, 7.0])
    x = x0 + sigma[:, None, None, None] * eps
    assert torch.allclose(ms.calculate_input(sigma, x), x / (sigma[:, None, None, None] ** 2 + 1).sqrt())
    assert torch.allclose(ms.calculate_denoised(sigma, eps, x), x0, atol=1e-5)


def test_v_prediction_recovers_the_clean_latent():
    """v = alpha eps - sigma_vp x0 (Salimans & Ho 2022) with alpha = 1 / sqrt(1 + sigma^2)."""
    ms = ModelSampling.from_schedule(parameterization="v")
    x0, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([0.3, 9.0])
    s = sigma[:, None, None, None]
    alpha = 1 / (1 + s**2).sqrt()
    v = alpha * eps - s * alpha * x0
    assert torch.allclose(ms.calculate_denoised(sigma, v, x0 + s * eps), x0, atol=1e-5)


def test_noise_scaling_at_the_top_and_below():
    ms = ModelSampling.sd1()
    noise, latent = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    top = ms.sigma_max
    assert torch.allclose(ms.noise_scaling(top, noise, torch.zeros_like(latent), True), noise * (1 + top**2).sqrt())
    assert torch.allclose(ms.noise_scaling(torch.tensor(2.0), noise, latent, False), latent + 2 * noise)
    assert ms.inverse_noise_scaling(top, latent) is latent


def test_percent_to_sigma():
    ms = ModelSampling.sd1()
    assert ms.percent_to_sigma(0.0) == 999999999.9 and ms.percent_to_sigma(1.0) == 0.0
    assert ms.percent_to_sigma(0.5) == pytest.approx(float(ms.sigma(torch.tensor(499.5))), rel=1e-6)
    assert ms.percent_to_sigma(0.001) < float(ms.sigma_max)


def test_unknown_parameterization_is_rejected():
    with pytest.raises(ValueError, match="parameterization"):
        ModelSampling.from_schedule(parameterization="x0")


def test_fractional_timestep_equals_k_diffusion_sigma_to_t():
    """k-diffusion's DiscreteSchedule.sigma_to_t(quantize=False) on our table. Its own table takes
    float32 logs of float32 sigmas, which differ from ours (float32 of the float64 log) by up to
    one ulp; at the table's finest spacing that alone moves t by ~1e-4, so the reference is given
    our log-sigmas to compare the interpolation itself."""
    from tests.kdiffusion_ref import load_external

    ms = ModelSampling.sd1()
    reference = load_external().DiscreteSchedule(ms.sigmas, quantize=False)
    reference.log_sigmas = ms.log_sigmas.clone()
    generator = torch.Generator().manual_seed(0)
    sigmas = torch.empty(4000).uniform_(-4.5, 3.5, generator=generator).exp()  # beyond both table ends
    sigmas = torch.cat([sigmas, ms.sigmas[[0, 1, 500, 998, 999]]])
    got = ms.fractional_timestep(sigmas)
    expected = reference.sigma_to_t(sigmas)
    assert torch.allclose(got, expected, rtol=0, atol=1e-5)
    assert got.min() == 0 and got.max() == 999 and got.dtype == torch.float32
    assert not torch.equal(got, got.round())  # really fractional, unlike ModelSampling.timestep


def test_fractional_timestep_inverts_sigma():
    """Up to float32 rounding through exp and log (~1e-4 of a step where the table is densest)."""
    ms = ModelSampling.sd1()
    t = torch.linspace(0, 999, 4001).reshape(-1, 1)  # (N, 1): shape kept
    assert torch.allclose(ms.fractional_timestep(ms.sigma(t)), t, rtol=0, atol=2e-4)
    assert ms.fractional_timestep(ms.sigma(t)).shape == t.shape
    assert float(ms.fractional_timestep(torch.tensor(float(ms.sigmas[321])))) == 321.0
    assert torch.equal(ms.timestep(ms.sigma(torch.tensor([10.25, 10.75]))), torch.tensor([10.0, 11.0]))
