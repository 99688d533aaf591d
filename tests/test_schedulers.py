"""Schedules and step schedulers against the reference facts (shared/reference)."""

import pytest
import torch

from nodeflow.sampling.noise import initial_noise
from nodeflow.sampling.schedulers import SCHEDULERS, compute_sigmas
from nodeflow.sampling.model_sampling import ModelSampling, make_betas


@pytest.fixture(scope="module")
def sd1():
    return ModelSampling.sd1()


def test_sd1_table_endpoints(sd1):
    assert float(sd1.sigma_min) == pytest.approx(0.02916716, rel=1e-6)
    assert float(sd1.sigma_max) == pytest.approx(14.6146412, rel=1e-6)
    assert sd1.sigmas.dtype == torch.float32 and len(sd1.sigmas) == 1000


def test_karras_endpoints_and_shape(sd1):
    sigmas = compute_sigmas(sd1, "karras", 10)
    assert sigmas.shape == (11,) and sigmas[-1] == 0
    assert float(sigmas[0]) == pytest.approx(14.6146412, rel=1e-6)
    assert float(sigmas[-2]) == pytest.approx(0.02916716, rel=1e-5)


def test_normal_interpolates_the_table_in_log_sigma(sd1):
    sigmas = compute_sigmas(sd1, "normal", 4)  # timesteps 999, 666, 333, 0
    assert torch.allclose(sigmas[:4], sd1.sigmas[[999, 666, 333, 0]], rtol=1e-6)
    fractional = compute_sigmas(sd1, "normal", 3)[1]  # t = 499.5
    expected = torch.exp((sd1.log_sigmas[499] + sd1.log_sigmas[500]) / 2)
    assert float(fractional) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_decreases_to_zero(sd1, name):
    sigmas = compute_sigmas(sd1, name, 20)
    assert sigmas.dtype == torch.float32 and sigmas[-1] == 0
    assert torch.all(sigmas[:-1] > sigmas[1:])
    assert float(sigmas[0]) <= float(sd1.sigma_max) * 1.0001
    assert 15 <= len(sigmas) - 1 <= 21  # beta drops duplicate timesteps, ddim_uniform may add one


def test_timestep_is_the_nearest_table_index(sd1):
    t = sd1.timestep(sd1.sigmas[[0, 10, 999]] * 1.001)
    assert t.tolist() == [0.0, 10.0, 999.0]


def test_betas_schedules():
    assert torch.allclose(make_betas("scaled_linear")[[0, -1]], torch.tensor([0.00085, 0.012], dtype=torch.float64))
    assert make_betas("cosine").max() <= 0.999
    with pytest.raises(ValueError, match="unknown beta schedule"):
        make_betas("nope")


def test_initial_noise_matches_comfyui_for_seed_7():
    noise = initial_noise((1, 4, 64, 64), 7)
    expected = torch.tensor([-0.82013452, 0.39563116, 0.89890850, -1.38840389])
    assert torch.allclose(noise.flatten()[:4], expected, atol=1e-7)


def test_batch_index_noise_equals_the_image_in_the_full_batch():
    full = initial_noise((4, 4, 8, 8), 3)
    picked = initial_noise((2, 4, 8, 8), 3, batch_index=[3, 1])
    assert torch.equal(picked[0], full[3]) and torch.equal(picked[1], full[1])


def test_largest_seed_is_accepted():
    assert initial_noise((1, 4, 2, 2), 2**64 - 1).shape == (1, 4, 2, 2)


def test_names_follow_comfyui_order():
    from nodeflow.sampling.schedulers import SCHEDULER_NAMES

    assert list(SCHEDULER_NAMES) == ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta",
                                     "normal", "linear_quadratic", "kl_optimal"]


@pytest.mark.parametrize("steps", [1, 7, 20, 50])
def test_karras_and_exponential_equal_k_diffusion(sd1, steps):
    from tests.kdiffusion_ref import load_sampling

    k = load_sampling()
    low, high = float(sd1.sigma_min), float(sd1.sigma_max)
    assert torch.equal(compute_sigmas(sd1, "karras", steps), k.get_sigmas_karras(steps, low, high))
    assert torch.equal(compute_sigmas(sd1, "exponential", steps), k.get_sigmas_exponential(steps, low, high))


@pytest.mark.parametrize("steps", [2, 9, 20, 50])
def test_normal_equals_k_diffusion_discrete_schedule(sd1, steps):
    from tests.kdiffusion_ref import load_external

    reference = load_external().DiscreteSchedule(sd1.sigmas, quantize=True)
    assert torch.allclose(compute_sigmas(sd1, "normal", steps), reference.get_sigmas(steps), rtol=1e-6, atol=0)
    sigmas = compute_sigmas(sd1, "karras", steps)[:-1]
    assert torch.equal(sd1.timestep(sigmas), reference.sigma_to_t(sigmas).float())


@pytest.mark.parametrize("steps", [3, 10, 20, 33, 100])
def test_beta_picks_the_timesteps_of_scipys_beta_quantiles(sd1, steps):
    scipy_stats = pytest.importorskip("scipy.stats")
    import numpy

    quantiles = 1 - numpy.linspace(0, 1, steps, endpoint=False)
    timesteps = numpy.rint(scipy_stats.beta.ppf(quantiles, 0.6, 0.6) * 999).astype(int)
    picked = [int(t) for i, t in enumerate(timesteps) if i == 0 or t != timesteps[i - 1]]
    expected = torch.cat([sd1.sigmas[picked], torch.zeros(1)])
    assert torch.equal(compute_sigmas(sd1, "beta", steps), expected)


def test_kl_optimal_spans_the_table_evenly_in_arctan(sd1):
    sigmas = compute_sigmas(sd1, "kl_optimal", 10)
    assert float(sigmas[0]) == pytest.approx(float(sd1.sigma_max), rel=1e-6)
    assert float(sigmas[-2]) == pytest.approx(float(sd1.sigma_min), rel=1e-5)
    steps = torch.diff(torch.atan(sigmas[:-1].double()))
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-5)


def test_linear_quadratic_shape(sd1):
    sigmas = compute_sigmas(sd1, "linear_quadratic", 10)
    sigma_max = float(sd1.sigma_max)
    assert float(sigmas[0]) == pytest.approx(sigma_max) and sigmas[-1] == 0
    first_half = (1 - sigmas[:6] / sigma_max).tolist()  # linear up to the threshold 0.025
    assert first_half == pytest.approx([0.0, 0.005, 0.01, 0.015, 0.02, 0.025], abs=1e-6)


def test_sigma_of_fractional_timestep_interpolates_log_sigma(sd1):
    t = torch.tensor([0.0, 10.25, 998.5])
    expected = torch.exp(torch.stack([sd1.log_sigmas[0], 0.75 * sd1.log_sigmas[10] + 0.25 * sd1.log_sigmas[11],
                                      0.5 * (sd1.log_sigmas[998] + sd1.log_sigmas[999])]))
    assert torch.allclose(sd1.sigma(t), expected, rtol=1e-6)
    assert torch.equal(sd1.timestep(sd1.sigma(torch.tensor([5.0, 500.0]))), torch.tensor([5.0, 500.0]))


@pytest.mark.parametrize("steps", [1, 3, 7, 20, 33, 50])
def test_sgm_uniform_equals_k_diffusion_over_one_more_step(sd1, steps):
    """sgm_uniform spaces steps + 1 timesteps from 999 to 0 and drops the last: k-diffusion's
    DiscreteSchedule.get_sigmas(steps + 1) without its sigma at t = 0 (diffusers has no
    counterpart: it interpolates fractional timesteps linearly in sigma, not in log-sigma)."""
    from tests.kdiffusion_ref import load_external

    reference = load_external().DiscreteSchedule(sd1.sigmas, quantize=True).get_sigmas(steps + 1)
    expected = torch.cat([reference[:-2], torch.zeros(1)])
    assert torch.allclose(compute_sigmas(sd1, "sgm_uniform", steps), expected, rtol=1e-6, atol=0)


def diffusers_euler_sigmas(spacing, steps, own_table=False, **options):
    """diffusers' EulerDiscreteScheduler sigmas for SD1's schedule. Unless ``own_table``, it is given
    our float64 alphas_cumprod: its own is a float32 cumprod whose sigmas are off by up to 1.3e-5
    relative at the small end (the tables are compared in test_schedules), which would blur the
    comparison of the step choice."""
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 timestep_spacing=spacing, **options)
    if not own_table:
        scheduler.alphas_cumprod = torch.cumprod(1 - make_betas("scaled_linear"), 0)
    scheduler.set_timesteps(steps)
    return scheduler.sigmas, scheduler.timesteps


# simple takes table index 999 - floor(i T / n); diffusers' "trailing" 999 - round(i T / n). They
# agree for every i exactly when n divides T = 1000 (otherwise some i has a fractional part of at
# least a half: i T mod n runs over all multiples of gcd(T, n) below n).
SIMPLE_AGREES = [1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500, 1000]


@pytest.mark.parametrize("steps", SIMPLE_AGREES)
def test_simple_equals_diffusers_trailing_when_steps_divide_1000(sd1, steps):
    expected, _ = diffusers_euler_sigmas("trailing", steps)
    assert torch.allclose(compute_sigmas(sd1, "simple", steps), expected, rtol=1e-6, atol=0)
    with_its_table, _ = diffusers_euler_sigmas("trailing", steps, own_table=True)  # float32: 1.3e-5 at t = 0
    assert torch.allclose(compute_sigmas(sd1, "simple", steps), with_its_table, rtol=2e-5, atol=0)


@pytest.mark.parametrize("steps", [7, 16, 30, 33, 64])
def test_simple_differs_from_diffusers_trailing_only_by_rounding(sd1, steps):
    """Otherwise diffusers' timestep is one lower exactly where i T / n has a fractional part over
    a half (at exactly a half numpy rounds to even, either way). diffusers also builds its
    timesteps with a float arange, which gives n - 1 or n + 1 of them for some n (61, 103, ...)."""
    _, theirs = diffusers_euler_sigmas("trailing", steps)
    ours = sd1.timestep(compute_sigmas(sd1, "simple", steps)[:-1])
    assert len(theirs) == len(ours) == steps
    remainder = torch.tensor([i * 1000 % steps for i in range(steps)])
    difference = ours - theirs.float()
    assert torch.equal(difference[2 * remainder < steps], torch.zeros_like(difference[2 * remainder < steps]))
    assert torch.equal(difference[2 * remainder > steps], torch.ones_like(difference[2 * remainder > steps]))
    assert difference.abs().max() == 1


# ddim_uniform takes indices 1, 1 + c, 1 + 2c, ... below T with c = T // n: more than n of them
# unless T mod n <= 1; diffusers' "leading" (steps_offset 1) takes the first n of the same.
DDIM_UNIFORM_AGREES = [1, 2, 3, 4, 5, 8, 9, 10, 20, 25, 27, 37, 40, 50, 100, 111, 125, 200, 250, 333, 500, 999]


@pytest.mark.parametrize("steps", DDIM_UNIFORM_AGREES)
def test_ddim_uniform_equals_diffusers_leading_when_1000_mod_steps_is_at_most_1(sd1, steps):
    expected, _ = diffusers_euler_sigmas("leading", steps, steps_offset=1)
    assert torch.allclose(compute_sigmas(sd1, "ddim_uniform", steps), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("steps", [6, 7, 30, 33, 64, 300])
def test_ddim_uniform_is_diffusers_leading_with_extra_steps_in_front(sd1, steps):
    expected, _ = diffusers_euler_sigmas("leading", steps, steps_offset=1)
    ours = compute_sigmas(sd1, "ddim_uniform", steps)
    stride = 1000 // steps
    assert len(ours) - 1 == len(range(1, 1000, stride)) > steps
    assert torch.allclose(ours[-(steps + 1):], expected, rtol=1e-6, atol=0)
