"""SA-Solver (Xue et al. 2023, "SA-Solver: Stochastic Adams Solver for Fast Sampling of Diffusion
Models", NeurIPS 2023), in the data prediction and the half log-SNR lambda = -log sigma, with
ComfyUI's semantics (its sa_solver / sa_solver_pece and the SamplerSASolver node).

The variance-controlled SDE of the paper (eq. 7 with tau(t) the amount of noise) has the exact
solution from lambda_s to lambda_t = lambda_s + h (eq. 11, alpha = 1 for these VE models)

    x_t = (sigma_t / sigma_s) e^(-tau^2 h) x_s
          + int_s^t (1 + tau^2) e^((1 + tau^2)(lambda - lambda_t)) D(lambda) dlambda
          + sigma_t sqrt(1 - e^(-2 tau^2 h)) z.

The Adams methods replace D by the Lagrange polynomial through the last model estimates: the
predictor (stochastic Adams-Bashforth, eq. 15) through D at lambda_{i-p+1} .. lambda_i, stepping
to lambda_{i+1}; the corrector (stochastic Adams-Moulton, eq. 18) redoes the previous step with
the new estimate at its end among the nodes and the predictor's own noise z. Each step takes one
model call; with PECE (predict, evaluate, correct, evaluate) the corrected state is evaluated
again and that estimate replaces the predicted one's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from nodeflow.sampling.model_sampling import ModelSampling
from nodeflow.sampling.noise import NoiseSource
from nodeflow.sampling.samplers_common import Callback, Denoiser, report, sigma_batch, t_of

logger = logging.getLogger(__name__)

#: The stretch of sampling (fractions of the way through it) where KSampler's sa_solver adds noise.
DEFAULT_SDE_PERCENTS = (0.2, 0.8)


@dataclass(frozen=True)
class TauInterval:
    """SA-Solver's tau(sigma): ``eta`` for sigmas in [end_sigma, start_sigma], 0 (the ODE) outside;
    eta <= 0 is the ODE everywhere. Sigma, not the paper's time t, decides (as ComfyUI)."""

    start_sigma: float
    end_sigma: float
    eta: float = 1.0

    def __call__(self, sigma: torch.Tensor | float) -> float:
        if self.eta <= 0:
            return 0.0
        return self.eta if self.start_sigma >= float(sigma) >= self.end_sigma else 0.0


@lru_cache(maxsize=1)
def _sd_sampling() -> ModelSampling:
    return ModelSampling.sd1()


def default_tau(model_sampling: ModelSampling | None = None, eta: float = 1.0) -> TauInterval:
    """KSampler's tau: ``eta`` from 20 % to 80 % of the way through the model's sigmas. Without the
    model's sampling, SD's table (SD1, SD2 and SDXL share it)."""
    if model_sampling is None:
        logger.debug("sa_solver: no model sampling given, the SDE interval is SD's (percents %s)",
                     DEFAULT_SDE_PERCENTS)
        model_sampling = _sd_sampling()
    start, end = DEFAULT_SDE_PERCENTS
    return TauInterval(model_sampling.percent_to_sigma(start), model_sampling.percent_to_sigma(end), eta)


def exponential_moments(s: float, t: float, count: int, tau: float) -> list[float]:
    """m_p = int_s^t w(u) u^p du for p < ``count``, with SA-Solver's weight w(u) = (1 + tau^2)
    e^((1 + tau^2)(u - t)). Integration by parts gives m_0 = 1 - e^(-(1 + tau^2)(t - s)) and
    m_p = t^p - s^p e^(-(1 + tau^2)(t - s)) - p m_(p-1) / (1 + tau^2)."""
    k = 1.0 + tau**2
    decay = math.exp(-k * (t - s))
    moments: list[float] = []
    for p in range(count):
        moment = t**p - s**p * decay
        if p:
            moment -= p * moments[-1] / k
        moments.append(moment)
    return moments


def adams_weights(nodes: list[float], s: float, t: float, tau: float) -> list[float]:
    """b_j = int_s^t w(u) l_j(u) du for the Lagrange basis l_j on ``nodes`` (the paper's eqs. 15
    and 18, alpha = 1): the b solving sum_j nodes_j^p b_j = m_p for p < len(nodes), since
    sum_j nodes_j^p l_j(u) = u^p. In float64."""
    count = len(nodes)
    moments = torch.tensor(exponential_moments(s, t, count, tau), dtype=torch.float64)  # (count,)
    powers = torch.tensor([[node**p for node in nodes] for p in range(count)], dtype=torch.float64)  # (p, j)
    return torch.linalg.solve(powers, moments).tolist()


def simple_order_2_weights(nodes: list[float], s: float, t: float, tau: float, corrector: bool) -> list[float]:
    """The paper's simplified second-order weights (appendix D; diffusers' SASolverScheduler at
    order 2), oldest node first. They sum to 1 - e^(-(1 + tau^2) h) like the exact ones; the
    corrector gives its newest node (1 + tau^2) h / 2, the predictor its older node
    (1 + tau^2) h^2 / (2 (lambda_older - lambda_s))."""
    k = 1.0 + tau**2
    h = t - s
    total = -math.expm1(-k * h)
    if corrector:
        newest = 0.5 * k * h
        return [total - newest, newest]
    older = 0.5 * k * h * h / (nodes[0] - s)
    return [older, total - older]


def step_weights(nodes: list[float], s: float, t: float, tau: float, simple_order_2: bool,
                 corrector: bool) -> list[float]:
    """The weights of the estimates at ``nodes`` (lambdas, oldest first) for a step from lambda
    ``s`` to ``t``."""
    if simple_order_2 and len(nodes) == 2:
        return simple_order_2_weights(nodes, s, t, tau, corrector)
    return adams_weights(nodes, s, t, tau)


def adams_step(x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, tau: float,
               estimates: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """(sigma_next / sigma) e^(-tau^2 h) x + sum_j b_j D_j, h = lambda_next - lambda: the
    solution formula without its noise."""
    h = t_of(sigma_next) - t_of(sigma)
    drift = sum(weight * estimate for weight, estimate in zip(weights, estimates))
    return sigma_next / sigma * torch.exp(-(tau**2) * h) * x + drift


def sde_noise(noise: NoiseSource, x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, tau: float,
              s_noise: float) -> torch.Tensor:
    """sigma_next sqrt(1 - e^(-2 tau^2 h)) z s_noise, with z the run's ancestral noise (seed + 1)."""
    h = t_of(sigma_next) - t_of(sigma)
    return noise.step(x) * sigma_next * (-2 * tau**2 * h).expm1().neg().sqrt() * s_noise


def step_orders(i: int, available: int, total: int, predictor_order: int, corrector_order: int,
                final_denoise: bool, use_pece: bool, to_zero: bool) -> tuple[int, int]:
    """(predictor, corrector) orders at step i of ``total`` with ``available`` estimates: no
    corrector at the first step nor on the final denoising step (unless PECE); on a schedule that
    ends at 0 the orders fall towards the end (the predictor's to 1 on the step before the last)."""
    predictor = min(predictor_order, available)
    corrector = 0 if i == 0 or (final_denoise and not use_pece) else min(corrector_order, available)
    if to_zero:
        predictor = min(predictor, total - 1 - i)
        corrector = min(corrector, total - i)
    return predictor, corrector


@torch.no_grad()
def sample_sa_solver(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                     noise: NoiseSource | None = None, callback: Callback = None, tau_func=None,
                     s_noise: float = 1.0, predictor_order: int = 3, corrector_order: int = 4,
                     use_pece: bool = False, simple_order_2: bool = False,
                     model_sampling: ModelSampling | None = None) -> torch.Tensor:
    """SA-Solver (Xue et al. 2023): stochastic Adams predictor of ``predictor_order`` and
    corrector of ``corrector_order`` (0: none) in the data prediction; ``tau_func(sigma)`` the
    noise amount of the step ending at sigma (default: KSampler's, eta 1 from 20 % to 80 % of
    ``model_sampling``'s sigmas); fresh noise (seed + 1) on the noisy steps; the step to 0 returns
    the denoised estimate. ``use_pece``: evaluate the corrected state again (PECE)."""
    if len(sigmas) <= 1:
        return x
    tau_of = tau_func if tau_func is not None else default_tau(model_sampling)
    lambdas = t_of(sigmas.double()).tolist()  # inf at a final 0, never used
    total = len(sigmas) - 1
    to_zero = float(sigmas[-1]) == 0
    kept = max(predictor_order, corrector_order, 1)
    history: list[torch.Tensor] = []  # the latest estimates, oldest first
    x_pred, tau, step_noise = x, 0.0, None
    for i in range(total):
        denoised = denoise(x_pred, sigma_batch(x_pred, sigmas[i]))
        report(callback, i, total, x_pred, denoised)
        history = (history + [denoised])[-kept:]
        final = float(sigmas[i + 1]) == 0
        p, c = step_orders(i, len(history), total, predictor_order, corrector_order, final, use_pece, to_zero)
        if c:  # corrector: redo the step sigma_{i-1} -> sigma_i with this estimate and the same noise
            weights = step_weights(lambdas[i - c + 1:i + 1], lambdas[i - 1], lambdas[i], tau, simple_order_2, True)
            x = adams_step(x, sigmas[i - 1], sigmas[i], tau, history[-c:], weights)
            if step_noise is not None:
                x = x + step_noise
            if use_pece:
                history[-1] = denoise(x, sigma_batch(x, sigmas[i]))
        else:
            x = x_pred
        if final:
            x_pred = history[-1]
            continue
        tau = tau_of(sigmas[i + 1])
        weights = step_weights(lambdas[i - p + 1:i + 1], lambdas[i], lambdas[i + 1], tau, simple_order_2, False)
        x_pred = adams_step(x, sigmas[i], sigmas[i + 1], tau, history[-p:], weights)
        step_noise = None
        if tau > 0 and s_noise > 0:
            step_noise = sde_noise(noise, x, sigmas[i], sigmas[i + 1], tau, s_noise)
            x_pred = x_pred + step_noise
    return x_pred


sample_sa_solver.wants_model_sampling = True  # its default SDE interval is the model's


@torch.no_grad()
def sample_sa_solver_pece(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                          noise: NoiseSource | None = None, callback: Callback = None, tau_func=None,
                          s_noise: float = 1.0, predictor_order: int = 3, corrector_order: int = 4,
                          simple_order_2: bool = False, model_sampling: ModelSampling | None = None) -> torch.Tensor:
    """SA-Solver in PECE mode (predict, evaluate, correct, evaluate): a second model call on each
    corrected state (Xue et al. 2023)."""
    return sample_sa_solver(denoise, x, sigmas, noise=noise, callback=callback, tau_func=tau_func, s_noise=s_noise,
                            predictor_order=predictor_order, corrector_order=corrector_order, use_pece=True,
                            simple_order_2=simple_order_2, model_sampling=model_sampling)


sample_sa_solver_pece.wants_model_sampling = True
