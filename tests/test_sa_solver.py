"""SA-Solver (sa_solver, sa_solver_pece): against diffusers' SASolverScheduler, against a reference
written here from the paper's formulas with weights by numerical quadrature, and analytic checks.

Two references, because neither covers everything: diffusers' scheduler is ComfyUI's sampler with
simple_order_2 (its order-2 steps always take the paper's simplified weights), on schedules that
end above 0 (it has no final denoising step) and without PECE; the quadrature reference covers the
exact weights of every order, schedules ending at 0 (lower orders at the end) and PECE.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from nodeflow.sampling.model_sampling import ModelSampling
from nodeflow.sampling.model_sampling_continuous import ContinuousModelSampling
from nodeflow.sampling.noise import NoiseSource
from nodeflow.sampling.samplers import SAMPLERS, STOCHASTIC
from nodeflow.sampling.samplers_sa_solver import (TauInterval, adams_weights, default_tau, sample_sa_solver,
                                                  simple_order_2_weights)
from nodeflow.sampling.schedulers import karras

MU, S = 0.5, 0.7  # data distribution N(MU, S^2) for the analytic checks


def toy_denoiser(x, sigma):
    """A smooth non-linear denoiser that tells the methods apart."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return torch.tanh(x / (1 + s)) * 0.8 + 0.1 * torch.sin(3 * x) / (1 + s**2)


def gaussian_denoiser(x, sigma):
    """E[x0 | x] for x0 ~ N(MU, S^2), x = x0 + sigma eps."""
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return (S**2 * x + s2 * MU) / (S**2 + s2)


class QueuedNoise:
    """Ancestral noise handed out in order (the NoiseSource API); counts the draws."""

    def __init__(self, values):
        self.values, self.used = list(values), 0

    def step(self, x):
        self.used += 1
        return self.values[self.used - 1]


class NoNoise:
    def step(self, x):
        raise AssertionError("an ODE run drew noise")


def schedule(steps: int, to_zero: bool = True) -> torch.Tensor:
    """SD's karras schedule in float64; without its final 0 it ends at sigma_min."""
    sigmas = karras(ModelSampling.sd1(), steps + (0 if to_zero else 1)).double()
    return sigmas if to_zero else sigmas[:-1]


def start(sigmas, shape=(2, 4, 5, 5), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * sigmas[0]


def step_noises(sigmas, tau, shape=(2, 4, 5, 5), seed=11):
    """One standard normal tensor per step, and those of the noisy steps (tau at the step's end > 0)."""
    generator = torch.Generator().manual_seed(seed)
    per_step = [torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(len(sigmas) - 1)]
    return per_step, [z for k, z in enumerate(per_step) if tau(sigmas[k + 1]) > 0]


# ---- the weights

def quadrature_weights(nodes, s, t, tau):
    """int_s^t (1 + tau^2) e^((1 + tau^2)(u - t)) l_j(u) du with the Lagrange basis l_j written as
    a product, by adaptive quadrature (scipy)."""
    k = 1 + tau**2

    def basis(j, u):
        return math.prod((u - node) / (nodes[j] - node) for m, node in enumerate(nodes) if m != j)

    return [integrate.quad(lambda u: k * math.exp(k * (u - t)) * basis(j, u), s, t, epsabs=1e-14, epsrel=1e-13)[0]
            for j in range(len(nodes))]


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0])
def test_weights_equal_quadrature(order, tau):
    """Predictor nodes (the last ``order`` lambdas up to s) and corrector nodes (up to t)."""
    lambdas = (-schedule(12).log())[:-1].tolist()  # -2.68 .. 3.53, uneven
    i = 8
    predictor_nodes = lambdas[i - order + 1:i + 1]
    got = adams_weights(predictor_nodes, lambdas[i], lambdas[i + 1], tau)
    assert got == pytest.approx(quadrature_weights(predictor_nodes, lambdas[i], lambdas[i + 1], tau), rel=1e-9,
                                abs=1e-12)
    corrector_nodes = lambdas[i - order + 2:i + 2]
    got = adams_weights(corrector_nodes, lambdas[i], lambdas[i + 1], tau)
    assert got == pytest.approx(quadrature_weights(corrector_nodes, lambdas[i], lambdas[i + 1], tau), rel=1e-9,
                                abs=1e-12)


@pytest.mark.parametrize("tau", [0.0, 0.7])
def test_simple_order_2_weights_sum_like_the_exact_ones_and_differ_by_h_squared(tau):
    """Both integrate a constant exactly (sum 1 - e^(-(1 + tau^2) h)); they differ by O(h^2), which
    times D_new - D_old = O(h) leaves the order unchanged (appendix D)."""
    differences = []
    for h in (0.2, 0.1):
        s, t = 1.0, 1.0 + h
        for corrector, nodes in ((False, [s - 0.8 * h, s]), (True, [s, t])):
            simple = simple_order_2_weights(nodes, s, t, tau, corrector)
            exact = quadrature_weights(nodes, s, t, tau)
            assert sum(simple) == pytest.approx(-math.expm1(-(1 + tau**2) * h), rel=1e-12)
            differences.append(abs(simple[0] - exact[0]))
    assert differences[2] < differences[0] / 3.5 and differences[3] < differences[1] / 3.5  # h halved: about / 4


# ---- against diffusers (simple_order_2, a schedule ending at sigma_min)

def run_diffusers(monkeypatch, sigmas, x, tau, noises, predictor_order, corrector_order):
    """diffusers' SASolverScheduler on our sigmas and denoiser, in its variance-preserving space
    (z = x / sqrt(1 + sigma^2)). Its tau_func gets the step's index as its timestep and returns our
    tau at the step's end (ComfyUI's tau_func(sigmas[i + 1])); its noise is the step's noise."""
    diffusers = pytest.importorskip("diffusers")
    import diffusers.schedulers.scheduling_sasolver as module

    steps = len(sigmas) - 1
    scheduler = diffusers.SASolverScheduler(predictor_order=predictor_order, corrector_order=corrector_order,
                                            prediction_type="sample", algorithm_type="data_prediction",
                                            lower_order_final=False, tau_func=lambda k: tau(sigmas[int(k) + 1]))
    scheduler.set_timesteps(steps)
    scheduler.sigmas = sigmas.clone()
    scheduler.timesteps = torch.arange(steps)
    monkeypatch.setattr(module, "randn_tensor", lambda *args, **kwargs: noises[scheduler.step_index])
    alphas = 1 / (1 + sigmas**2).sqrt()
    sample = x * alphas[0]
    for k in range(steps):
        denoised = toy_denoiser(sample / alphas[k], sigmas[k].expand(x.shape[0]))
        sample = scheduler.step(denoised, k, sample).prev_sample
    return sample / alphas[-1]


@pytest.mark.parametrize("predictor_order, corrector_order", [(3, 4), (2, 2), (1, 1), (4, 3), (2, 1)])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_matches_diffusers_sasolver(monkeypatch, predictor_order, corrector_order, eta):
    sigmas = schedule(10, to_zero=False)
    tau = TauInterval(5.0, 0.5, eta)  # noisy on part of the schedule only
    x = start(sigmas)
    per_step, drawn = step_noises(sigmas, tau)
    noise = QueuedNoise(drawn)
    got = sample_sa_solver(toy_denoiser, x.clone(), sigmas, noise=noise, tau_func=tau, simple_order_2=True,
                           predictor_order=predictor_order, corrector_order=corrector_order)
    expected = run_diffusers(monkeypatch, sigmas, x.clone(), tau, per_step, predictor_order, corrector_order)
    assert noise.used == (len(drawn) if eta else 0) and (len(drawn) == 4 if eta else True)
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-10


# ---- against the paper's formulas (exact weights, a schedule ending at 0, PECE)

def reference_sa_solver(denoise, x, sigmas, tau, noises, predictor_order, corrector_order, pece):
    """SA-Solver written out from eqs. 15 and 18 with quadrature weights, with ComfyUI's order
    rules: predictor order min(p, i + 1), corrector order min(c, i + 1) and no corrector at the
    first step or (without PECE) on the step to 0; on a schedule ending at 0, orders at most
    n - 1 - i (predictor) and n - i (corrector)."""
    n = len(sigmas) - 1
    sig = sigmas.tolist()
    lam = [-math.log(s) if s > 0 else math.inf for s in sig]
    to_zero = sig[-1] == 0
    estimates, drawn = {}, iter(noises)
    corrected, predicted, z, tau_prev = x, x, 0.0, 0.0

    def combine(base, s_index, t_index, tau_value, nodes):
        weights = quadrature_weights([lam[j] for j in nodes], lam[s_index], lam[t_index], tau_value)
        h = lam[t_index] - lam[s_index]
        return sig[t_index] / sig[s_index] * math.exp(-tau_value**2 * h) * base + sum(
            w * estimates[j] for w, j in zip(weights, nodes))

    for i in range(n):
        estimates[i] = denoise(predicted, sigmas[i].expand(x.shape[0]))
        c = min(corrector_order, i + 1, n - i if to_zero else n)
        if i > 0 and c > 0 and (sig[i + 1] > 0 or pece):
            corrected = combine(corrected, i - 1, i, tau_prev, list(range(i - c + 1, i + 1))) + z
            if pece:
                estimates[i] = denoise(corrected, sigmas[i].expand(x.shape[0]))
        else:
            corrected = predicted
        if sig[i + 1] == 0:
            return estimates[i]
        tau_prev = tau(sig[i + 1])
        p = min(predictor_order, i + 1, n - 1 - i if to_zero else n)
        h = lam[i + 1] - lam[i]
        z = sig[i + 1] * math.sqrt(-math.expm1(-2 * tau_prev**2 * h)) * next(drawn) if tau_prev > 0 else 0.0
        predicted = combine(corrected, i, i + 1, tau_prev, list(range(i - p + 1, i + 1))) + z
    return predicted


@pytest.mark.parametrize("predictor_order, corrector_order", [(3, 4), (1, 0), (2, 3), (6, 6), (5, 2)])
@pytest.mark.parametrize("pece", [False, True])
@pytest.mark.parametrize("to_zero", [True, False])
def test_matches_the_papers_formulas(predictor_order, corrector_order, pece, to_zero):
    sigmas = schedule(9, to_zero)
    tau = TauInterval(6.0, 0.3, 0.8)
    x = start(sigmas, shape=(2, 3, 4))
    _, drawn = step_noises(sigmas, tau, shape=(2, 3, 4))
    got = sample_sa_solver(toy_denoiser, x.clone(), sigmas, noise=QueuedNoise(drawn), tau_func=tau, use_pece=pece,
                           predictor_order=predictor_order, corrector_order=corrector_order)
    expected = reference_sa_solver(toy_denoiser, x.clone(), sigmas, tau, drawn, predictor_order, corrector_order,
                                   pece)
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-10


# ---- analytic checks

def test_ode_first_order_predictor_is_ddim():
    """eta 0, predictor order 1, no corrector: x' = (sigma' / sigma) x + (1 - sigma' / sigma) D,
    DPM-Solver++(1) = DDIM, our ddim (the Euler step in sigma)."""
    sigmas = schedule(12)
    x = start(sigmas)
    got = sample_sa_solver(toy_denoiser, x.clone(), sigmas, noise=NoNoise(), tau_func=TauInterval(100.0, 0.0, 0.0),
                           predictor_order=1, corrector_order=0)
    assert float((got - SAMPLERS["ddim"](toy_denoiser, x.clone(), sigmas)).abs().max()) < 1e-12


@pytest.mark.parametrize("name", ["sa_solver", "sa_solver_pece"])
def test_a_constant_estimate_is_reached(name):
    """D = c: every order's weights sum to 1 - sigma' / sigma (eta 0), so x - c shrinks by exactly
    sigma' / sigma per step, and the step to 0 returns c."""
    c = torch.full((1, 4, 3, 3), 0.37, dtype=torch.float64)

    def constant(x, sigma):
        return c.expand_as(x)

    ode = TauInterval(100.0, 0.0, 0.0)
    sigmas = schedule(10, to_zero=False)
    x = start(sigmas, shape=(1, 4, 3, 3))
    got = SAMPLERS[name](constant, x.clone(), sigmas, noise=NoNoise(), tau_func=ode)
    assert torch.allclose(got, c + (x - c) * sigmas[-1] / sigmas[0], rtol=0, atol=1e-12)
    to_zero = SAMPLERS[name](constant, x.clone(), schedule(10), noise=NoiseSource(1))  # the default: noisy steps
    assert torch.equal(to_zero, c)


def exact_ode_solution(x_start, sigma_start, sigma_end):
    """The probability-flow ODE for Gaussian data: MU + (x - MU) sqrt(S^2 + sigma^2) / sqrt(S^2 + sigma_start^2)."""
    return MU + (x_start - MU) * math.sqrt(S**2 + sigma_end**2) / math.sqrt(S**2 + sigma_start**2)


@pytest.mark.parametrize("name", ["sa_solver", "sa_solver_pece"])
def test_ode_mode_converges_at_high_order(name):
    """With eta 0 (predictor 3, corrector 4) on the exact Gaussian denoiser, down to sigma_min: the
    error falls by far more than 4 from 10 to 40 steps (a first-order method's factor; asked: 16;
    measured 0.064 -> 2.5e-4, a factor of 260, for sa_solver)."""
    errors = []
    for steps in (10, 40):
        sigmas = schedule(steps, to_zero=False)
        x = torch.linspace(-3, 3, 11, dtype=torch.float64) * float(sigmas[0])
        got = SAMPLERS[name](gaussian_denoiser, x.clone(), sigmas, noise=NoNoise(),
                             tau_func=TauInterval(100.0, 0.0, 0.0))
        errors.append(float((got - exact_ode_solution(x, float(sigmas[0]), float(sigmas[-1]))).abs().max()))
    assert errors[1] < errors[0] / 16 and errors[1] < 1e-3, errors


@pytest.mark.parametrize("name", ["sa_solver", "sa_solver_pece"])
def test_same_seed_same_result_and_eta_zero_ignores_it(name):
    sigmas = karras(ModelSampling.sd1(), 8)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    a = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(9))
    b = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(9))
    c = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(10))
    assert name in STOCHASTIC and torch.equal(a, b) and float((a - c).abs().max()) > 1e-3
    ode = TauInterval(100.0, 0.0, 0.0)
    d = SAMPLERS[name](toy_denoiser, x.clone(), sigmas, noise=NoNoise(), tau_func=ode)
    assert float((a - d).abs().max()) > 1e-3


def test_noise_is_the_runs_ancestral_noise():
    """The noisy steps draw NoiseSource.step (seed + 1, ComfyUI's default noise sampler on the CPU):
    the run equals one given those draws in order."""
    sigmas = karras(ModelSampling.sd1(), 8)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    tau = default_tau()
    noisy_steps = sum(tau(s) > 0 for s in sigmas[1:-1])
    source = NoiseSource(9)
    draws = [source.step(x) for _ in range(noisy_steps)]
    queued = QueuedNoise(draws)
    assert torch.equal(SAMPLERS["sa_solver"](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(9)),
                       SAMPLERS["sa_solver"](toy_denoiser, x.clone(), sigmas, noise=queued))
    assert queued.used == noisy_steps == 3


def test_default_noise_interval_is_ksamplers():
    """Without tau_func: eta 1 between the model's sigmas at 20 % and 80 % of sampling (ComfyUI's
    percent_to_sigma(0.2) and (0.8)); SD's table when the model's sampling is not given."""
    sd = ModelSampling.sd1()
    assert default_tau() == TauInterval(sd.percent_to_sigma(0.2), sd.percent_to_sigma(0.8), 1.0)
    assert default_tau() == TauInterval(pytest.approx(5.0924, abs=1e-4), pytest.approx(0.5712, abs=1e-4), 1.0)
    edm = ContinuousModelSampling.continuous("edm", "v", 0.002, 120.0)
    assert default_tau(edm).start_sigma == pytest.approx(edm.percent_to_sigma(0.2)) != default_tau().start_sigma
    sigmas = karras(ModelSampling.sd1(), 8)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    given = SAMPLERS["sa_solver"](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(3), tau_func=default_tau(sd))
    assert torch.equal(SAMPLERS["sa_solver"](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(3)), given)
    other = SAMPLERS["sa_solver"](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(3), model_sampling=edm)
    assert not torch.equal(other, given)


def recording(denoiser, seen):
    def denoise(x, sigma):
        seen.append(round(float(sigma[0]), 6))
        return denoiser(x, sigma)

    return denoise


def test_pece_adds_one_evaluation_per_corrected_step():
    """sa_solver calls the model once per step; sa_solver_pece once more at every corrected state
    (steps 1 .. n - 1, the step to 0 included): 2n - 1 calls, the extra one at the same sigma."""
    sigmas = karras(ModelSampling.sd1(), 8)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    plain, pece = [], []
    reports = []
    a = SAMPLERS["sa_solver"](recording(toy_denoiser, plain), x.clone(), sigmas, noise=NoiseSource(2))
    b = SAMPLERS["sa_solver_pece"](recording(toy_denoiser, pece), x.clone(), sigmas, noise=NoiseSource(2),
                                   callback=lambda i, n, x, d: reports.append((i, n)))
    step_sigmas = [round(float(s), 6) for s in sigmas[:-1]]
    assert plain == step_sigmas
    assert pece == [step_sigmas[0]] + [s for s in step_sigmas[1:] for _ in range(2)]
    assert reports == [(i, 8) for i in range(8)]  # the callback still reports each step once
    assert float((a - b).abs().max()) > 1e-3
    assert torch.equal(b, sample_sa_solver(toy_denoiser, x.clone(), sigmas, noise=NoiseSource(2), use_pece=True))


def test_pece_differs_only_by_the_extra_evaluation():
    """With a denoiser whose estimate ignores x the extra evaluation returns the estimate already
    held, so PECE's result is sa_solver's exactly; with no corrector there is nothing to evaluate."""
    sigmas = karras(ModelSampling.sd1(), 8)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * sigmas[0]

    def by_sigma(x, sigma):
        pattern = torch.arange(x[0].numel(), dtype=x.dtype).reshape(x.shape[1:])
        return torch.sin(sigma.reshape(-1, *([1] * (x.ndim - 1))) * pattern).expand_as(x)

    assert torch.equal(SAMPLERS["sa_solver"](by_sigma, x.clone(), sigmas, noise=NoiseSource(4)),
                       SAMPLERS["sa_solver_pece"](by_sigma, x.clone(), sigmas, noise=NoiseSource(4)))
    calls = []
    a = SAMPLERS["sa_solver"](toy_denoiser, x.clone(), sigmas, noise=NoiseSource(4), corrector_order=0)
    b = SAMPLERS["sa_solver_pece"](recording(toy_denoiser, calls), x.clone(), sigmas, noise=NoiseSource(4),
                                   corrector_order=0)
    assert torch.equal(a, b) and len(calls) == 8


def test_one_sigma_is_a_no_op_and_float32_runs():
    x = torch.randn(1, 4, 4, 4)
    assert SAMPLERS["sa_solver"](toy_denoiser, x, torch.tensor([3.0]), noise=NoNoise()) is x
    sigmas = karras(ModelSampling.sd1(), 6)
    got = SAMPLERS["sa_solver_pece"](toy_denoiser, x * sigmas[0], sigmas, noise=NoiseSource(0), predictor_order=6,
                                     corrector_order=6, simple_order_2=True)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()


def test_ksampler_and_sampler_choice_give_sa_solver_the_models_sampling():
    """KSampler's sa_solver takes its default SDE interval (20 % to 80 %) from the model being
    sampled, as ComfyUI's: a zero-terminal-SNR model's table, not SD's."""
    from nodeflow.sampling.custom import SamplerChoice
    from nodeflow.sampling.ksampler import run_sampler
    from nodeflow.sampling.model_sampling import ModelSampling
    from nodeflow.sampling.guidance import CFGDenoiser
    from tests.toy_models import cond, toy_model

    seen = []

    def spy(denoise, x, sigmas, *, noise=None, callback=None, model_sampling=None):
        seen.append(model_sampling)
        callback(0, 1, x, denoise(x, sigmas[:1].expand(len(x))))
        return x

    spy.wants_model_sampling = True
    model = toy_model().clone_with(sampling=ModelSampling.discrete("eps", zsnr=True))
    sigmas = torch.tensor([3.0, 1.0, 0.0])
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    guidance = lambda max_batch: CFGDenoiser(model, cond(1.0), cond(-1.0), 4.0, None, max_batch)  # noqa: E731
    run_sampler(model, guidance, spy, sigmas, latent, torch.zeros(1, 4, 8, 8), 0)
    assert seen == [model.sampling]
    assert SamplerChoice("sa_solver").wants_model_sampling and not SamplerChoice("euler").wants_model_sampling
