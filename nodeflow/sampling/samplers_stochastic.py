"""Stochastic samplers: ancestral steps (fresh Gaussian noise from the run's ``NoiseSource``)
and SDE solvers (increments of the run's seeded Brownian motion). Same seed, same result."""

from __future__ import annotations

import torch

from nodeflow.sampling.noise import NoiseSource
from nodeflow.sampling.samplers_common import (Callback, Denoiser, ancestral_step, derivative, report,
                                               sigma_batch, sigma_of, t_of)


@torch.no_grad()
def sample_euler_ancestral(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                           noise: NoiseSource | None = None, callback: Callback = None,
                           eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """Ancestral Euler (k-diffusion; Karras et al. 2022 with the ancestral step of Song et al.
    2021): an Euler step to sigma_down, then fresh noise of std sigma_up; the last step returns
    the denoised estimate and draws nothing."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = denoised
            continue
        x = x + derivative(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        x = x + noise.step(x) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                           noise: NoiseSource | None = None, callback: Callback = None,
                           eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """Ancestral DPM2 (Karras et al. 2022 / Lu et al. 2022): a log-sigma midpoint step to
    sigma_down, then fresh noise of std sigma_up."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        d = derivative(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
            continue
        sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
        x_2 = x + d * (sigma_mid - sigmas[i])
        d_2 = derivative(x_2, sigma_mid, denoise(x_2, sigma_batch(x, sigma_mid)))
        x = x + d_2 * (sigma_down - sigmas[i])
        x = x + noise.step(x) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                              noise: NoiseSource | None = None, callback: Callback = None,
                              eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2S), ancestral (Lu et al. 2022b, "DPM-Solver++: Fast Solver for Guided
    Sampling of Diffusion Probabilistic Models", algorithm 1): second-order single-step in the
    data prediction to sigma_down, then fresh noise."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = x + derivative(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = t_of(sigmas[i]), t_of(sigma_down)
            h = t_next - t
            s = t + h / 2
            x_2 = (sigma_of(s) / sigma_of(t)) * x - (-h / 2).expm1() * denoised
            denoised_2 = denoise(x_2, sigma_batch(x, sigma_of(s)))
            x = (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise.step(x) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_ddpm(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                noise: NoiseSource | None = None, callback: Callback = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, "Denoising Diffusion Probabilistic Models",
    algorithm 2 with the posterior variance beta-tilde), with the alphas derived from the
    schedule's sigmas (abar = 1 / (1 + sigma^2)), in the variance-preserving latent."""
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma_batch(x, sigma))
        report(callback, i, total, x, denoised)
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
    """Latent Consistency Model multistep sampling (Luo et al. 2023, "Latent Consistency Models",
    algorithm 1): jump to the denoised estimate, then re-noise it to the next sigma."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + noise.step(x) * sigmas[i + 1]
    return x


@torch.no_grad()
def sample_dpmpp_sde(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                     noise: NoiseSource | None = None, callback: Callback = None,
                     eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5) -> torch.Tensor:
    """DPM-Solver++ SDE (k-diffusion's stochastic DPM-Solver++, Lu et al. 2022b): second order,
    intermediate point at ratio r in log-sigma, ancestral noise from the seeded Brownian motion."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = x + derivative(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = t_of(sigmas[i]), t_of(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        sd, su = ancestral_step(sigma_of(t), sigma_of(s), eta)
        s_ = t_of(sd)
        x_2 = (sigma_of(s_) / sigma_of(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise.brownian(x, sigmas, sigmas[i], sigma_of(s)) * s_noise * su
        denoised_2 = denoise(x_2, sigma_batch(x, sigma_of(s)))
        sd, su = ancestral_step(sigma_of(t), sigma_of(t_next), eta)
        t_next_ = t_of(sd)
        mixed = (1 - fac) * denoised + fac * denoised_2
        x = (sigma_of(t_next_) / sigma_of(t)) * x - (t - t_next_).expm1() * mixed
        x = x + noise.brownian(x, sigmas, sigmas[i], sigmas[i + 1]) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                        noise: NoiseSource | None = None, callback: Callback = None,
                        eta: float = 1.0, s_noise: float = 1.0, solver_type: str = "midpoint") -> torch.Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022b, the SDE variant of algorithm 2), noise from the
    seeded Brownian motion. ``solver_type``: the second-order correction of k-diffusion's
    midpoint (0.5 (1 - e^-(h + eta h)) / r) or heun (((1 - e^-(h + eta h)) / -(h + eta h) + 1) / r) form."""
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"unknown solver_type {solver_type!r} (midpoint, heun)")
    total = len(sigmas) - 1
    previous, h_last = None, None
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = t_of(sigmas[i + 1]) - t_of(sigmas[i])
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if previous is not None:
                if solver_type == "heun":
                    weight = (-h - eta_h).expm1().neg() / (-h - eta_h) + 1
                else:
                    weight = 0.5 * (-h - eta_h).expm1().neg()
                x = x + weight * (h / h_last) * (denoised - previous)
            if eta:
                x = x + (noise.brownian(x, sigmas, sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                         * (-2 * eta_h).expm1().neg().sqrt() * s_noise)
            h_last = h
        previous = denoised
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                        noise: NoiseSource | None = None, callback: Callback = None,
                        eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(3M) SDE (Lu et al. 2022b, third-order multistep, as in k-diffusion), noise
    from the seeded Brownian motion."""
    total = len(sigmas) - 1
    denoised_1 = denoised_2 = None
    h_1 = h_2 = None
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = t_of(sigmas[i + 1]) - t_of(sigmas[i])
            h_eta = h * (eta + 1)
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + (-h_eta).expm1().neg() * denoised
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
                         * (-2 * h * eta).expm1().neg().sqrt() * s_noise)
            h_1, h_2 = h, h_1
        denoised_1, denoised_2 = denoised, denoised_1
    return x


def sample_dpmpp_2m_sde_heun(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                             noise: NoiseSource | None = None, callback: Callback = None,
                             eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2M) SDE with the heun correction (ComfyUI's dpmpp_2m_sde_heun)."""
    return sample_dpmpp_2m_sde(denoise, x, sigmas, noise=noise, callback=callback, eta=eta, s_noise=s_noise,
                               solver_type="heun")


def er_sde_noise_scaler(x: torch.Tensor) -> torch.Tensor:
    """ER-SDE's default noise scale function: x (e^(x^0.3) + 10)."""
    return x * ((x**0.3).exp() + 10.0)


@torch.no_grad()
def sample_er_sde(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                  noise: NoiseSource | None = None, callback: Callback = None, s_noise: float = 1.0,
                  noise_scaler=None, max_stage: int = 3) -> torch.Tensor:
    """Extended reverse-time SDE solver (Cui et al. 2023, "Elucidating the solution space of
    extended reverse-time SDE for diffusion models", VP ER-SDE-Solver-3): for a VE model its
    lambda is sigma; up to third order, the integrals of 1 / scaler approximated by 200-point
    sums; fresh noise (ancestral, seed + 1) scaled by sqrt(lambda_t^2 - lambda_s^2 r^2)."""
    scaler = noise_scaler or er_sde_noise_scaler
    points = torch.arange(0, 200.0, dtype=torch.float32, device=x.device)
    lambdas = sigmas  # er_lambda = sigma / alpha, alpha = 1 for these models
    total = len(sigmas) - 1
    old_denoised = old_denoised_d = None
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = lambdas[i], lambdas[i + 1]
            r = scaler(lambda_t) / scaler(lambda_s)
            x = r * x + (1 - r) * denoised
            if stage >= 2:
                dt = lambda_t - lambda_s
                step = -dt / 200.0
                positions = lambda_t + points * step
                scaled = scaler(positions)
                s = torch.sum(1 / scaled) * step
                denoised_d = (denoised - old_denoised) / (lambda_s - lambdas[i - 1])
                x = x + (dt + s * scaler(lambda_t)) * denoised_d
                if stage >= 3:
                    s_u = torch.sum((positions - lambda_s) / scaled) * step
                    denoised_u = (denoised_d - old_denoised_d) / ((lambda_s - lambdas[i - 2]) / 2)
                    x = x + ((dt**2) / 2 + s_u * scaler(lambda_t)) * denoised_u
                old_denoised_d = denoised_d
            if s_noise > 0:
                x = x + noise.step(x) * s_noise * (lambda_t**2 - lambda_s**2 * r**2).sqrt().nan_to_num(nan=0.0)
        old_denoised = denoised
    return x


def _phi_1(h: torch.Tensor) -> torch.Tensor:
    """h phi_1(h) of exponential integrators: e^h - 1."""
    return torch.expm1(h)


def _phi_2(h: torch.Tensor) -> torch.Tensor:
    """h phi_2(h): (e^h - 1 - h) / h."""
    return (torch.expm1(h) - h) / h


def _seeds_point(lambda_s: torch.Tensor, lambda_t: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma, alpha) at the log-SNR ``ratio`` of the way from lambda_s to lambda_t (alpha: 1 for
    VE models, computed as sigma e^lambda like ComfyUI, rounding included)."""
    lam = torch.lerp(lambda_s, lambda_t, ratio)
    sigma = sigma_of(lam)
    return sigma, sigma * lam.exp()


def _seeds_noise(path: torch.Tensor | None, segment: torch.Tensor, noise: NoiseSource, x: torch.Tensor) -> torch.Tensor:
    """SEEDS' SDE noise over the next segment of one Brownian path (segment = -ratio h eta): the
    previous part decayed by e^segment plus fresh noise of the missing variance 1 - e^(2 segment)."""
    fresh = segment.mul(2).expm1().neg().sqrt() * noise.step(x)
    return fresh if path is None else path * segment.exp() + fresh


@torch.no_grad()
def sample_seeds_2(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                   noise: NoiseSource | None = None, callback: Callback = None, eta: float = 1.0,
                   s_noise: float = 1.0, r: float = 0.5, solver_type: str = "phi_1") -> torch.Tensor:
    """SEEDS-2 (Gonzalez et al. 2023, "SEEDS: Exponential SDE Solvers for Fast High-Quality
    Sampling from Diffusion Models", data prediction, stage 2): an exponential-integrator step to
    the intermediate log-SNR at ratio ``r``, a second model call there, then the full step with
    the two estimates combined (phi_1: mixed by 1 / (2 r); phi_2: the second-order weights), with
    SDE noise whose two segments are correlated as one Brownian path (eta: how stochastic)."""
    if solver_type not in ("phi_1", "phi_2"):
        raise ValueError(f"unknown solver_type {solver_type!r} (phi_1, phi_2)")
    inject = eta > 0 and s_noise > 0
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = t_of(sigmas[i]), t_of(sigmas[i + 1])
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        sigma_1, alpha_1 = _seeds_point(lambda_s, lambda_t, r)
        alpha_t = sigmas[i + 1] * lambda_t.exp()  # 1 for VE models
        x_2 = sigma_1 / sigmas[i] * (-r * h * eta).exp() * x - alpha_1 * _phi_1(-r * h_eta) * denoised
        if inject:
            path = _seeds_noise(None, -r * h * eta, noise, x)
            x_2 = x_2 + path * sigma_1 * s_noise
        denoised_2 = denoise(x_2, sigma_batch(x, sigma_1))
        if solver_type == "phi_1":
            estimate = _phi_1(-h_eta) * torch.lerp(denoised, denoised_2, 1 / (2 * r))
        else:
            b2 = _phi_2(-h_eta) / r
            estimate = (_phi_1(-h_eta) - b2) * denoised + b2 * denoised_2
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * estimate
        if inject:
            path = _seeds_noise(path, (r - 1) * h * eta, noise, x)
            x = x + path * sigmas[i + 1] * s_noise
    return x


@torch.no_grad()
def sample_exp_heun_2_x0(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                         noise: NoiseSource | None = None, callback: Callback = None,
                         solver_type: str = "phi_2") -> torch.Tensor:
    """Exponential Heun, second order, in data prediction and log-SNR time: SEEDS-2 with r = 1,
    deterministic."""
    return sample_seeds_2(denoise, x, sigmas, noise=noise, callback=callback, eta=0.0, s_noise=0.0, r=1.0,
                          solver_type=solver_type)


@torch.no_grad()
def sample_exp_heun_2_x0_sde(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                             noise: NoiseSource | None = None, callback: Callback = None, eta: float = 1.0,
                             s_noise: float = 1.0, solver_type: str = "phi_2") -> torch.Tensor:
    """Exponential Heun with SDE noise: SEEDS-2 with r = 1."""
    return sample_seeds_2(denoise, x, sigmas, noise=noise, callback=callback, eta=eta, s_noise=s_noise, r=1.0,
                          solver_type=solver_type)


@torch.no_grad()
def sample_seeds_3(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                   noise: NoiseSource | None = None, callback: Callback = None, eta: float = 1.0,
                   s_noise: float = 1.0, r_1: float = 1 / 3, r_2: float = 2 / 3) -> torch.Tensor:
    """SEEDS-3: three model calls per step, at the start and at log-SNR ratios r_1 and r_2,
    combined with third-order exponential-integrator weights; SDE noise along one Brownian path."""
    inject = eta > 0 and s_noise > 0
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigma_batch(x, sigmas[i]))
        report(callback, i, total, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = t_of(sigmas[i]), t_of(sigmas[i + 1])
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        sigma_1, alpha_1 = _seeds_point(lambda_s, lambda_t, r_1)
        sigma_2, alpha_2 = _seeds_point(lambda_s, lambda_t, r_2)
        alpha_t = sigmas[i + 1] * lambda_t.exp()  # 1 for VE models
        x_2 = sigma_1 / sigmas[i] * (-r_1 * h * eta).exp() * x - alpha_1 * _phi_1(-r_1 * h_eta) * denoised
        if inject:
            path = _seeds_noise(None, -r_1 * h * eta, noise, x)
            x_2 = x_2 + path * sigma_1 * s_noise
        denoised_2 = denoise(x_2, sigma_batch(x, sigma_1))
        a3_2 = r_2 / r_1 * _phi_2(-r_2 * h_eta)
        a3_1 = _phi_1(-r_2 * h_eta) - a3_2
        x_3 = sigma_2 / sigmas[i] * (-r_2 * h * eta).exp() * x - alpha_2 * (a3_1 * denoised + a3_2 * denoised_2)
        if inject:
            path = _seeds_noise(path, (r_1 - r_2) * h * eta, noise, x)
            x_3 = x_3 + path * sigma_2 * s_noise
        denoised_3 = denoise(x_3, sigma_batch(x, sigma_2))
        b3 = _phi_2(-h_eta) / r_2
        estimate = (_phi_1(-h_eta) - b3) * denoised + b3 * denoised_3
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * estimate
        if inject:
            path = _seeds_noise(path, (r_2 - 1) * h * eta, noise, x)
            x = x + path * sigmas[i + 1] * s_noise
    return x
