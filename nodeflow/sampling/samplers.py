"""Samplers under ComfyUI's names, each a function over a denoiser (k-diffusion's contract).

``sampler(denoise, x, sigmas, *, noise, callback) -> x`` where ``denoise(x, sigma)`` returns the
model's estimate of the clean latent at noise level ``sigma`` (a (B,) tensor), ``x`` starts at
``sigmas[0]`` and the result is at ``sigmas[-1]`` (0: clean). ``noise`` is a ``NoiseSource``
(stochastic samplers draw from it, so one seed gives one image); ``callback(step, total, x,
denoised)`` is called after each model evaluation of a step.

The ODE view (Karras et al. 2022): dx/dsigma = (x - D(x; sigma)) / sigma.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nodeflow.sampling.noise import NoiseSource

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], None] | None


def _sigma_batch(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return sigma * x.new_ones([x.shape[0]])


def _derivative(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """dx/dsigma of the probability-flow ODE: (x - D) / sigma."""
    return (x - denoised) / sigma


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float = 1.0):
    """(sigma_down, sigma_up): step deterministically to sigma_down, then add noise of std sigma_up
    so that the marginal is at sigma_next (Song et al. 2021's DDPM sampler as an ancestral step)."""
    if not eta:
        return sigma_next, torch.zeros_like(sigma_next)
    sigma_up = torch.minimum(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    return (sigma_next**2 - sigma_up**2) ** 0.5, sigma_up


def _report(callback: Callback, step: int, total: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
    if callback is not None:
        callback(step, total, x, denoised)


def _t(sigma: torch.Tensor) -> torch.Tensor:
    """t = -log(sigma), the time variable of DPM-Solver (Lu et al. 2022)."""
    return sigma.log().neg()


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


@torch.no_grad()
def sample_euler(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                 noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, algorithm 2 without churn)."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        x = x + _derivative(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_euler_ancestral(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                           noise: NoiseSource | None = None, callback: Callback = None,
                           eta: float = 1.0) -> torch.Tensor:
    """Euler steps to sigma_down plus fresh noise (k-diffusion's ancestral Euler)."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = denoised
            continue
        x = x + _derivative(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        x = x + noise.step(x) * sigma_up
    return x


@torch.no_grad()
def sample_heun(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, algorithm 1); Euler on the last step."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        d = _derivative(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        d_2 = _derivative(x_2, sigmas[i + 1], denoise(x_2, _sigma_batch(x, sigmas[i + 1])))
        x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpm_2(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                 noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """DPM-Solver-2 style midpoint method in log-sigma (Karras et al. 2022, "DPM2")."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        d = _derivative(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
            continue
        sigma_mid = sigmas[i].log().lerp(sigmas[i + 1].log(), 0.5).exp()
        x_2 = x + d * (sigma_mid - sigmas[i])
        d_2 = _derivative(x_2, sigma_mid, denoise(x_2, _sigma_batch(x, sigma_mid)))
        x = x + d_2 * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                           noise: NoiseSource | None = None, callback: Callback = None,
                           eta: float = 1.0) -> torch.Tensor:
    """DPM2 to sigma_down, then ancestral noise."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        d = _derivative(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
            continue
        sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
        x_2 = x + d * (sigma_mid - sigmas[i])
        d_2 = _derivative(x_2, sigma_mid, denoise(x_2, _sigma_batch(x, sigma_mid)))
        x = x + d_2 * (sigma_down - sigmas[i])
        x = x + noise.step(x) * sigma_up
    return x


def _lms_coefficient(order: int, t: list[float], i: int, j: int) -> float:
    """Integral over [t_i, t_{i+1}] of the Lagrange basis polynomial of node t_{i-j} built on
    t_i, ..., t_{i-order+1} (exact polynomial integration)."""
    poly = [1.0]  # coefficients, lowest degree first
    for k in range(order):
        if k == j:
            continue
        denominator = t[i - j] - t[i - k]
        factor = [-t[i - k] / denominator, 1.0 / denominator]
        poly = [sum(poly[a] * factor[n - a] for a in range(len(poly)) if 0 <= n - a < 2)
                for n in range(len(poly) + 1)]

    def antiderivative(tau: float) -> float:
        return sum(c * tau ** (n + 1) / (n + 1) for n, c in enumerate(poly))

    return antiderivative(t[i + 1]) - antiderivative(t[i])


@torch.no_grad()
def sample_lms(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
               noise: NoiseSource | None = None, callback: Callback = None, order: int = 4) -> torch.Tensor:
    """Linear multistep (Adams-Bashforth in sigma) of up to ``order`` (k-diffusion's LMS)."""
    t = sigmas.double().cpu().tolist()
    history: list[torch.Tensor] = []
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        history.append(_derivative(x, sigmas[i], denoised))
        history = history[-order:]
        current = min(i + 1, order)
        coefficients = [_lms_coefficient(current, t, i, j) for j in range(current)]
        x = x + sum(c * d for c, d in zip(coefficients, reversed(history)))
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                              noise: NoiseSource | None = None, callback: Callback = None,
                              eta: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2S) single-step second order, ancestral (Lu et al. 2022b)."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = x + _derivative(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(sigma_down)
            h = t_next - t
            s = t + h / 2
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h / 2).expm1() * denoised
            denoised_2 = denoise(x_2, _sigma_batch(x, _sigma(s)))
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise.step(x) * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                     noise: NoiseSource | None = None, callback: Callback = None,
                     eta: float = 1.0, r: float = 0.5) -> torch.Tensor:
    """DPM-Solver++ (stochastic, second order, midpoint at ratio r) with Brownian noise."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = x + _derivative(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        sd, su = ancestral_step(_sigma(t), _sigma(s), eta)
        s_ = _t(sd)
        x_2 = (_sigma(s_) / _sigma(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise.brownian(x, sigmas, _sigma(t), _sigma(s)) * su
        denoised_2 = denoise(x_2, _sigma_batch(x, _sigma(s)))
        sd, su = ancestral_step(_sigma(t), _sigma(t_next), eta)
        t_next_ = _t(sd)
        mixed = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma(t_next_) / _sigma(t)) * x - (t - t_next_).expm1() * mixed
        x = x + noise.brownian(x, sigmas, _sigma(t), _sigma(t_next)) * su
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                    noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep in the data prediction (Lu et al. 2022b, alg. 2)."""
    total = len(sigmas) - 1
    previous = None
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
            h = t_next - t
            if previous is None:
                estimate = denoised
            else:
                ratio = (t - _t(sigmas[i - 1])) / h
                estimate = (1 + 1 / (2 * ratio)) * denoised - (1 / (2 * ratio)) * previous
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * estimate
        previous = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                        noise: NoiseSource | None = None, callback: Callback = None,
                        eta: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2M) SDE, midpoint variant, with Brownian noise."""
    total = len(sigmas) - 1
    previous, h_last = None, None
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = _t(sigmas[i + 1]) - _t(sigmas[i])
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if previous is not None:
                x = x + 0.5 * (-h - eta_h).expm1().neg() * (h / h_last) * (denoised - previous)
            if eta:
                x = x + (noise.brownian(x, sigmas, sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                         * (-2 * eta_h).expm1().neg().sqrt())
            h_last = h
        previous = denoised
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                        noise: NoiseSource | None = None, callback: Callback = None,
                        eta: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(3M) SDE: third-order multistep with Brownian noise."""
    total = len(sigmas) - 1
    denoised_1 = denoised_2 = None
    h_1 = h_2 = None
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = _t(sigmas[i + 1]) - _t(sigmas[i])
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None:
                x = x + phi_2 * (denoised - denoised_1) / (h_1 / h)
            if eta:
                x = x + (noise.brownian(x, sigmas, sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                         * (-2 * h * eta).expm1().neg().sqrt())
            h_1, h_2 = h, h_1
        denoised_1, denoised_2 = denoised, denoised_1
    return x


@torch.no_grad()
def sample_ddpm(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """Ancestral sampling of Ho et al. 2020 (eq. 11 with sigma_t^2 = beta-tilde), in alphas
    derived from the sigmas of the schedule."""
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, _sigma_batch(x, sigma))
        _report(callback, i, total, x, denoised)
        eps = (x - denoised) / sigma
        z = x / torch.sqrt(1.0 + sigma**2)  # the variance-preserving latent
        abar, abar_prev = 1 / (sigma**2 + 1), 1 / (sigma_next**2 + 1)
        alpha = abar / abar_prev
        z = (1.0 / alpha).sqrt() * (z - (1 - alpha) * eps / (1 - abar).sqrt())
        if sigma_next > 0:
            z = z + ((1 - alpha) * (1.0 - abar_prev) / (1.0 - abar)).sqrt() * noise.step(x)
            x = z * torch.sqrt(1.0 + sigma_next**2)
        else:
            x = z
    return x


@torch.no_grad()
def sample_lcm(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
               noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """Latent Consistency Model sampling (Luo et al. 2023): jump to the denoised estimate, then
    re-noise to the next sigma."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + noise.step(x) * sigmas[i + 1]
    return x


@torch.no_grad()
def sample_ipndm(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                 noise: NoiseSource | None = None, callback: Callback = None,
                 max_order: int = 4) -> torch.Tensor:
    """Improved pseudo linear multistep (iPNDM; Zhang & Chen 2023, "DEIS"): Adams-Bashforth
    with fixed coefficients of up to fourth order on the ODE derivative."""
    weights = {1: [1.0], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12],
               4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}
    total = len(sigmas) - 1
    history: list[torch.Tensor] = []
    for i in range(total):
        denoised = denoise(x, _sigma_batch(x, sigmas[i]))
        _report(callback, i, total, x, denoised)
        d = _derivative(x, sigmas[i], denoised)
        order = min(max_order, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            slope = sum(w * h for w, h in zip(weights[order], [d] + history[::-1]))
            x = x + (sigmas[i + 1] - sigmas[i]) * slope
        history = (history + [d])[-(max_order - 1):]
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpm_2": sample_dpm_2,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "lms": sample_lms,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "ddpm": sample_ddpm,
    "lcm": sample_lcm,
    "ipndm": sample_ipndm,
    "ddim": sample_euler,  # deterministic DDIM (eta 0) is Euler in the sigma view (as in ComfyUI)
}
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)

#: Samplers whose result depends on the noise source.
STOCHASTIC = frozenset({"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde",
                        "dpmpp_2m_sde", "dpmpp_3m_sde", "ddpm", "lcm"})


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; one of {', '.join(SAMPLERS)}") from None

