"""Sampling: the model as a denoiser (eps/v), noise tables, sigma schedules, samplers, guidance, noise."""
