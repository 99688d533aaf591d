"""Samplers: equal to k-diffusion's with the same noise; analytic checks on Gaussian data."""

import math

import pytest
import torch

from nodeflow.sampling.noise import NoiseSource
from nodeflow.sampling.samplers import SAMPLER_NAMES, SAMPLERS, STOCHASTIC
from nodeflow.sampling.schedulers import karras
from nodeflow.sampling.model_sampling import ModelSampling
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
    "dpmpp_3m_sde": "sample_dpmpp_3m_sde", "dpmpp_2m_sde_heun": "sample_dpmpp_2m_sde",
}


def relative_error(got, expected):
    return float((got - expected).abs().max() / expected.abs().max())


def run_both(name, sigmas, reference_name=None, **options):
    """Ours and k-diffusion's on the same toy denoiser, start and noise draws (and options)."""
    reference = getattr(load_sampling(), reference_name or REFERENCE_NAMES[name])
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    ours_noise, their_noise = ListNoise(x.shape), ListNoise(x.shape)
    got = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=ours_noise, **options)
    kwargs = {"noise_sampler": their_noise} if name in STOCHASTIC else {}
    if name == "dpmpp_2m_sde_heun":
        options = options | {"solver_type": "heun"}
    expected = reference(lambda x, sigma: toy_denoiser(x, sigma), x.clone(), sigmas, disable=True, **kwargs,
                         **options)
    assert ours_noise.used == their_noise.used
    return got, expected


@pytest.mark.parametrize("name", sorted(REFERENCE_NAMES))
def test_matches_k_diffusion_down_to_sigma_min(name):
    sigmas = karras(ModelSampling.sd1(), 12)[:-1]  # ends at sigma_min: every step is a full step
    got, expected = run_both(name, sigmas)
    assert relative_error(got, expected) < 1e-5


@pytest.mark.parametrize("name", sorted(set(REFERENCE_NAMES) - {"lms"}))
def test_matches_k_diffusion_down_to_zero(name):
    got, expected = run_both(name, karras(ModelSampling.sd1(), 12))
    assert relative_error(got, expected) < 1e-5


@pytest.mark.parametrize("name, options", [
    ("euler_ancestral", {"eta": 0.6, "s_noise": 0.8}), ("dpm_2_ancestral", {"eta": 0.5, "s_noise": 1.2}),
    ("dpmpp_2s_ancestral", {"eta": 0.7, "s_noise": 0.9}), ("dpmpp_sde", {"eta": 0.8, "s_noise": 0.7, "r": 0.4}),
    ("dpmpp_2m_sde", {"eta": 0.6, "s_noise": 1.1, "solver_type": "heun"}), ("dpmpp_2m_sde_heun", {"s_noise": 0.5}),
    ("dpmpp_3m_sde", {"eta": 0.5, "s_noise": 0.8}), ("lms", {"order": 2}),
])
def test_sampler_options_match_k_diffusion(name, options):
    """The options ComfyUI's sampler nodes (SamplerEulerAncestral, SamplerDPMPP_2M_SDE, ...) pass."""
    sigmas = karras(ModelSampling.sd1(), 10)[:-1]
    reference = "sample_dpmpp_2m_sde" if name == "dpmpp_2m_sde_heun" else None
    got, expected = run_both(name, sigmas, reference, **options)
    assert relative_error(got, expected) < 1e-5
    default, _ = run_both(name, sigmas, reference)
    assert relative_error(got, default) > 1e-4  # the options matter


def test_lms_last_step_returns_the_denoised_estimate():
    """ComfyUI's LMS (unlike k-diffusion's) ends with x = D(x) on the step to 0."""
    sigmas = karras(ModelSampling.sd1(), 8)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2)) * sigmas[0]
    seen = []
    got = SAMPLERS["lms"](toy_denoiser, x, sigmas, callback=lambda i, n, x, d: seen.append((x, d)))
    last_x, last_denoised = seen[-1]
    assert torch.equal(got, last_denoised)
    assert torch.equal(last_denoised, toy_denoiser(last_x, sigmas[-2:-1]))


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_dpm_fast_matches_k_diffusion(eta):
    reference = load_sampling().sample_dpm_fast
    sigmas = karras(ModelSampling.sd1(), 10)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    ours_noise, their_noise = ListNoise(x.shape), ListNoise(x.shape)
    got = SAMPLERS["dpm_fast"](toy_denoiser, x.clone(), sigmas, noise=ours_noise, eta=eta)
    expected = reference(toy_denoiser, x.clone(), float(sigmas[-2]), float(sigmas[0]), 10, disable=True,
                         eta=eta, noise_sampler=their_noise)
    assert relative_error(got, expected) < 1e-5


def test_dpm_adaptive_matches_k_diffusion():
    reference = load_sampling().sample_dpm_adaptive
    sigmas = karras(ModelSampling.sd1(), 10)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    calls = []
    got = SAMPLERS["dpm_adaptive"](toy_denoiser, x.clone(), sigmas,
                                   callback=lambda i, n, x, d: calls.append(i))
    expected, info = reference(toy_denoiser, x.clone(), float(sigmas[-2]), float(sigmas[0]), disable=True,
                               return_info=True)
    assert relative_error(got, expected) < 1e-5
    assert len(calls) == info["steps"] and info["n_reject"] >= 0


def exact_ode_solution(x_start, sigma_start, sigma_end=0.0):
    """The probability-flow ODE for Gaussian data: x(sigma) = MU + (x - MU) sqrt(S^2 + sigma^2) /
    sqrt(S^2 + sigma_start^2)."""
    return MU + (x_start - MU) * math.sqrt(S**2 + sigma_end**2) / math.sqrt(S**2 + sigma_start**2)


def consistency_denoiser(x, sigma):
    """The exact consistency function of N(MU, S^2) data (Song et al. 2023, "Consistency Models"):
    the end at sigma = 0 of the ODE trajectory through x, which is what LCM's sampler expects of
    its model (the posterior mean E[x0 | x] is not: see test_lcm_follows_its_variance_recursion)."""
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return MU + (x - MU) * S / (S**2 + s2) ** 0.5


DETERMINISTIC = sorted(set(SAMPLERS) - STOCHASTIC)
END_SIGMA = {"dpm_fast": "sigma_min", "dpm_adaptive": "sigma_min", "uni_pc": 0.001, "uni_pc_bh2": 0.001}
# Heun++'s weights tend to Euler's as sigma falls; CFG++ Euler is Euler when U = D (no guidance);
# gradient estimation corrects Euler's direction, not its order (measured 0.060 at 50 steps)
FIRST_ORDER = ["euler", "euler_cfg_pp", "ddim", "heunpp2", "gradient_estimation", "gradient_estimation_cfg_pp"]
# exponential Heun (SEEDS-2 with r = 1) is second order (test_error_shrinks_with_steps) with a larger constant
ODE_TOLERANCE = {**dict.fromkeys(FIRST_ORDER, 0.08), "dpm_adaptive": 0.1, "exp_heun_2_x0": 0.015}  # others 0.005


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_samplers_solve_the_ode(name):
    """At 50 karras steps, pointwise against the exact trajectory (to sigma_min for dpm_fast and
    dpm_adaptive, which stop there; to 0.001 for UniPC). Measured: 0.070 for Euler/DDIM, 0.061
    Heun++, 0.078 dpm_adaptive at its default tolerances, at most 0.0024 for the others."""
    sigmas = karras(ModelSampling.sd1(), 50)
    x = torch.linspace(-3, 3, 11) * float(sigmas[0])
    got = SAMPLERS[name](gaussian_denoiser, x.clone(), sigmas, noise=None)
    end = END_SIGMA.get(name, 0.0)
    end = float(sigmas[-2]) if end == "sigma_min" else end
    expected = exact_ode_solution(x, float(sigmas[0]), end)
    assert float((got - expected).abs().max()) < ODE_TOLERANCE.get(name, 0.005)


SAMPLES = 200_000  # independent draws (one per element), from one seed for the start, one for the noise
MONTE_CARLO = 4.5 / SAMPLES**0.5  # 4.5 standard errors, times S for the mean, S^2 sqrt(2) for the variance
# Bound on the bias of the variance at 50 karras steps (measured value in brackets). Every sampler
# here either stops at sigma_min (dpm_fast, dpm_adaptive: sigma_min^2 = 8.5e-4 of noise left, as
# in ComfyUI) or takes the last step sigma_min -> 0 as one denoising step (losing about
# sigma_min^2 of variance), whatever the step count: hence 2e-3 for the higher-order solvers.
VARIANCE_BIAS = {
    **dict.fromkeys(["exp_heun_2_x0", "exp_heun_2_x0_sde"], 0.004),  # second order, larger constant (0.0025)
    **dict.fromkeys(["euler", "euler_cfg_pp", "ddim", "gradient_estimation", "gradient_estimation_cfg_pp"], 0.04),
    # first order: error ~1.6 / steps (-0.032)
    "heunpp2": 0.04,  # Euler-like at small sigma (-0.028)
    **dict.fromkeys(["euler_ancestral", "euler_ancestral_cfg_pp", "ddpm"], 0.07),  # first-order ancestral step (-0.063)
    "dpm_adaptive": 0.05,  # bounded by its rtol 0.05 / atol 0.0078, not by the steps (+0.037)
    **dict.fromkeys(["dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"],
                    0.006),  # second/third order stochastic (+-0.005 over five seeds)
    "lcm": 0.0,  # exact with the exact consistency function
}  # the higher-order deterministic solvers: 0.002 (at most 0.0011)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_samples_have_the_data_mean_and_variance_at_50_steps(name):
    """Many samples of N(MU, S^2) from the exact Gaussian denoiser. The start is drawn from the
    exact marginal N(MU, S^2 + sigma_max^2), standardised to its exact sample mean and variance
    (moment matching) so that a deterministic sampler's result, affine in its start, carries no
    Monte Carlo error; the stochastic ones add their own noise, covered by 4.5 standard errors."""
    sigmas = karras(ModelSampling.sd1(), 50)
    z = torch.randn(SAMPLES, generator=torch.Generator().manual_seed(1))
    x = MU + (z - z.mean()) / z.std() * math.sqrt(S**2 + float(sigmas[0]) ** 2)
    denoiser = consistency_denoiser if name == "lcm" else gaussian_denoiser
    got = SAMPLERS[name](denoiser, x, sigmas, noise=NoiseSource(5))
    stochastic = name in STOCHASTIC
    mean_tolerance = MONTE_CARLO * S if stochastic else 1e-4
    variance_tolerance = VARIANCE_BIAS.get(name, 0.002) + (MONTE_CARLO * S**2 * 2**0.5 if stochastic else 0)
    assert abs(float(got.mean()) - MU) < mean_tolerance
    assert abs(float(got.var()) - S**2) < variance_tolerance


@pytest.mark.parametrize("name", sorted(set(DETERMINISTIC) - {"dpm_adaptive"}))
def test_error_shrinks_with_steps(name):
    """Between 10 and 40 steps (down to sigma_min, so no final denoising jump) the error of a
    first-order method falls by about 4 (asked: over 3), of a method of order >= 2 by far more
    (asked: over 8)."""
    ms = ModelSampling.sd1()
    errors = []
    for steps in (10, 40):
        sigmas = karras(ms, steps + 1)[:-1]
        x = torch.linspace(-3, 3, 11, dtype=torch.float64) * float(sigmas[0])
        got = SAMPLERS[name](gaussian_denoiser, x.clone(), sigmas.double(), noise=None)
        errors.append(float((got - exact_ode_solution(x, float(sigmas[0]), float(sigmas[-1]))).abs().max()))
    # gradient estimation extrapolates d over uneven karras steps: it converges, more slowly (2.55)
    ratio = 2 if name.startswith("gradient_estimation") else 3 if name in FIRST_ORDER else 8
    assert errors[1] < errors[0] / ratio, errors


def test_dpm_adaptive_reaches_its_tolerance():
    """dpm_adaptive picks its own steps: the error falls as its rtol/atol tighten, and at rtol 1e-4
    it is within 1e-3 of the exact trajectory (measured 4e-4, in 29 steps)."""
    sigmas = karras(ModelSampling.sd1(), 50).double()
    x = torch.linspace(-3, 3, 11, dtype=torch.float64) * float(sigmas[0])
    expected = exact_ode_solution(x, float(sigmas[0]), float(sigmas[-2]))
    errors = []
    for rtol, atol in [(1e-2, 1e-3), (1e-3, 1e-4), (1e-4, 1e-5)]:
        got = SAMPLERS["dpm_adaptive"](gaussian_denoiser, x.clone(), sigmas, rtol=rtol, atol=atol)
        errors.append(float((got - expected).abs().max()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3, errors


def test_deis_weights_integrate_dsigma():
    """The Lagrange basis sums to 1, so each step's weights sum to sigma_{i+1} - sigma_i."""
    from nodeflow.sampling.samplers_multistep import deis_coefficients

    sigmas = karras(ModelSampling.sd1(), 12)
    for i, row in enumerate(deis_coefficients(sigmas)):
        if row:
            assert sum(row) == pytest.approx(float(sigmas[i + 1] - sigmas[i]), rel=2e-3)
    assert [len(row) for row in deis_coefficients(sigmas)][:4] == [0, 2, 3, 3]


def test_names_follow_comfyui_order():
    comfy_order = ["euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
                   "exp_heun_2_x0", "exp_heun_2_x0_sde",
                   "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
                   "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
                   "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm",
                   "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
                   "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde",
                   "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"]
    assert list(SAMPLER_NAMES) == [name for name in comfy_order if name in SAMPLERS]
    assert len(SAMPLER_NAMES) == 40  # all of ComfyUI's KSampler names, less its 4 _gpu aliases


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


@pytest.mark.parametrize("name", ["dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde"])
def test_sde_samplers_draw_comfyuis_brownian_noise(name):
    """NoiseSource(seed) gives the increments of ComfyUI's BrownianTreeNoiseSampler for that seed
    (torchsde's BrownianTree over [smallest positive sigma, largest], entropy = the seed): the
    same run as k-diffusion's sampler given that noise sampler (ComfyUI's, built the same way)."""
    kdiffusion = load_sampling()
    sigmas = karras(ModelSampling.sd1(), 10)
    x = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    got = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(1234))
    tree = kdiffusion.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=1234)
    reference = getattr(kdiffusion, REFERENCE_NAMES[name])
    options = {"solver_type": "heun"} if name == "dpmpp_2m_sde_heun" else {}
    expected = reference(toy_denoiser, x.clone(), sigmas, disable=True, noise_sampler=tree, **options)
    assert relative_error(got, expected) < 1e-5
    other = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(1235))
    assert relative_error(other, expected) > 1e-3


def test_brownian_increments_are_standard_normal_and_reproducible():
    sigmas = torch.cat([torch.linspace(14.6, 0.0292, 2000), torch.zeros(1)])  # steps of ~0.007
    x = torch.zeros(20000)
    z = NoiseSource(4).brownian(x, sigmas, sigmas[-3], sigmas[-2])
    w = NoiseSource(4).brownian(x, sigmas, sigmas[0], sigmas[1])
    assert abs(float(z.std()) - 1) < 0.03 and abs(float(z.mean())) < 0.03 and abs(float((z * w).mean())) < 0.03
    assert torch.equal(NoiseSource(4).brownian(x, sigmas, sigmas[-3], sigmas[-2]), z)


def test_ancestral_noise_is_comfyuis_cpu_noise_seeded_with_seed_plus_one():
    x = torch.zeros(2, 3)
    assert torch.equal(NoiseSource(7).step(x), torch.randn(2, 3, generator=torch.Generator().manual_seed(8)))


def test_seeds_wrap_modulo_2_64():
    x = torch.zeros(8)
    assert torch.equal(NoiseSource(2**64).step(x), NoiseSource(0).step(x))
    assert torch.equal(NoiseSource(-1).step(x), NoiseSource(2**64 - 1).step(x))


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("steps", [2, 3, 12])
def test_uni_pc_matches_diffusers(variant, steps):
    """diffusers' UniPCMultistepScheduler (data prediction, lower-order final steps) run on our
    sigmas (the final 0 replaced by 0.001, as ComfyUI does) and our denoiser, in its
    variance-preserving space."""
    diffusers = pytest.importorskip("diffusers")
    sigmas = karras(ModelSampling.sd1(), steps)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    name = "uni_pc" if variant == "bh1" else "uni_pc_bh2"
    got = SAMPLERS[name](toy_denoiser, x.clone(), sigmas)

    scheduler = diffusers.UniPCMultistepScheduler(solver_order=min(3, steps - 1), solver_type=variant,
                                                  prediction_type="sample", predict_x0=True,
                                                  lower_order_final=True)
    scheduler.set_timesteps(steps)
    reference_sigmas = sigmas.clone()
    reference_sigmas[-1] = 0.001
    scheduler.sigmas = reference_sigmas
    scheduler.timesteps = torch.arange(steps - 1, -1, -1)
    alphas = 1 / (1 + reference_sigmas.double() ** 2).sqrt()
    sample = x * alphas[0]
    for i, timestep in enumerate(scheduler.timesteps):
        denoised = toy_denoiser(sample / alphas[i], sigmas[i] * torch.ones(2))
        sample = scheduler.step(denoised, timestep, sample).prev_sample
    expected = sample / alphas[-1]
    assert relative_error(got, expected.float()) < 1e-5


def test_ddim_is_song_et_al_update_with_eta_0():
    """DDIM's own update in the variance-preserving space (Song et al. 2021, eq. 12, eta = 0),
    z_s = sqrt(abar_s) D + sqrt(1 - abar_s) eps with eps = (z_t - sqrt(abar_t) D) / sqrt(1 - abar_t),
    run on the same denoiser, equals our ddim (the Euler step in sigma)."""
    assert "DDIM" in SAMPLERS["ddim"].__doc__ and "Song et al. 2021" in SAMPLERS["ddim"].__doc__
    sigmas = karras(ModelSampling.sd1(), 12).double()
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigmas[0]
    got = SAMPLERS["ddim"](toy_denoiser, x.clone(), sigmas)
    abar = 1 / (1 + sigmas**2)  # 1 at sigma = 0
    z = x * abar[0].sqrt()
    for i in range(len(sigmas) - 1):
        denoised = toy_denoiser(z / abar[i].sqrt(), sigmas[i].expand(2))
        eps = (z - abar[i].sqrt() * denoised) / (1 - abar[i]).sqrt()
        z = abar[i + 1].sqrt() * denoised + (1 - abar[i + 1]).sqrt() * eps
    assert relative_error(got, z) < 1e-10
