"""Model patches (issue 15): RescaleCFG, FreeU, FreeU_V2 — MODEL in, patched copy out.

RescaleCFG is checked against ComfyUI's formulation written out here independently (its
sampler_cfg_function works on x - D and returns x minus the result); FreeU's filter analytically,
its placement in the U-Net by the widths it sees, and both in composition with each other and a LoRA.
"""

from __future__ import annotations

import pytest
import torch

from nodeflow.sampling.guidance import CFGDenoiser
from nodeflow.sampling.model import DiffusionModel, LatentFormat
from nodeflow.sampling.model_patches import fourier_filter, freeu, rescale_cfg
from nodeflow.sampling.model_sampling import ModelSampling
from nodeflow_nodes.model_advanced import free_u, free_u_v2, rescale_cfg as rescale_cfg_node
from tests.test_unet_parity import random_unet, tiny_config
from tests.toy_models import cond, toy_model


def comfy_style_rescale(x, sigma, cond_d, uncond_d, cfg, multiplier):
    """ComfyUI's RescaleCFG as its sampler_cfg_function sees it: arguments x - D, result x - f."""
    c, u = x - cond_d, x - uncond_d
    s = sigma.view(-1, 1, 1, 1)
    xs = x / (s * s + 1.0)
    c = ((xs - (x - c)) * (s**2 + 1.0) ** 0.5) / s
    u = ((xs - (x - u)) * (s**2 + 1.0) ** 0.5) / s
    x_cfg = u + cfg * (c - u)
    ratio = torch.std(c, dim=(1, 2, 3), keepdim=True) / torch.std(x_cfg, dim=(1, 2, 3), keepdim=True)
    final = multiplier * x_cfg * ratio + (1 - multiplier) * x_cfg
    return x - (x - (xs - final * s / (s * s + 1.0) ** 0.5))


def test_rescale_cfg_equals_comfyuis_formulation_and_reduces_to_cfg():
    generator = torch.Generator().manual_seed(0)
    x, c, u = (torch.randn(2, 4, 8, 8, generator=generator) for _ in range(3))
    sigma = torch.tensor([3.0, 0.5])
    for multiplier in (0.0, 0.7, 1.0):
        got = rescale_cfg(multiplier)(x, sigma, c, u, 6.0)
        assert torch.allclose(got, comfy_style_rescale(x, sigma, c, u, 6.0, multiplier), atol=1e-5)
    assert torch.allclose(rescale_cfg(0.0)(x, sigma, c, u, 6.0), u + (c - u) * 6.0, atol=1e-5)


def test_rescale_cfg_node_patches_a_copy_that_the_sampler_uses():
    model = toy_model()
    [patched] = rescale_cfg_node(model, 0.7)
    assert model.guidance_function is None and patched.guidance_function is not None
    x, sigma = torch.randn(1, 4, 8, 8), torch.tensor([2.0])
    plain = CFGDenoiser(model, cond(1.0), cond(-1.0), 5.0)
    rescaled = CFGDenoiser(patched, cond(1.0), cond(-1.0), 5.0)
    c, u = plain.predict(x, sigma, plain.entries(8, 8))
    assert torch.allclose(rescaled(x, sigma), comfy_style_rescale(x, sigma, c, u, 5.0, 0.7), atol=1e-5)
    # at cfg 1 ComfyUI skips the negative and hands the function zeros for it
    one = CFGDenoiser(patched, cond(1.0), cond(-1.0), 1.0)
    assert torch.allclose(one(x, sigma), comfy_style_rescale(x, sigma, c, torch.zeros_like(c), 1.0, 0.7), atol=1e-5)


def test_fourier_filter_scales_only_the_lowest_frequencies():
    flat = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(fourier_filter(flat, 1, 0.2), flat * 0.2, atol=1e-5)  # all energy at DC
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None]) % 2 * 2.0 - 1.0
    checker = checker.expand(1, 2, 8, 8)
    assert torch.allclose(fourier_filter(checker, 1, 0.2), checker, atol=1e-5)  # Nyquist: untouched
    x = torch.randn(2, 3, 6, 10)
    assert torch.allclose(fourier_filter(x, 1, 1.0), x, atol=1e-5)


def unet_model():
    return DiffusionModel(random_unet(tiny_config()), ModelSampling.sd1(), LatentFormat(), torch.device("cpu"),
                          torch.float32)


def test_freeu_acts_on_the_decoder_blocks_of_2x_and_4x_width():
    model = unet_model()
    channels = model.unet.config.model_channels
    seen = []
    spy = model.with_unet_patches(output_block=(lambda h, skip, call: (seen.append(h.shape[1]), (h, skip))[1],))
    x, t, context = torch.randn(1, 4, 16, 16), torch.tensor([0.5]), torch.randn(1, 77, tiny_config().context_dim)
    spy.predict_denoised(x, t, context)
    assert channels * 2 in seen or channels * 4 in seen  # the widths FreeU looks for occur
    [neutral] = free_u(model, 1.0, 1.0, 1.0, 1.0)
    [patched] = free_u(model, 1.1, 1.2, 0.9, 0.2)
    [patched_v2] = free_u_v2(model, 1.3, 1.4, 0.9, 0.2)
    base = model.predict_denoised(x, t, context)
    assert torch.allclose(neutral.predict_denoised(x, t, context), base, atol=1e-5)
    assert not torch.allclose(patched.predict_denoised(x, t, context), base, atol=1e-4)
    assert not torch.allclose(patched_v2.predict_denoised(x, t, context), patched.predict_denoised(x, t, context))
    assert not model.unet_patches


def test_freeu_v2_scales_the_backbone_by_its_normalised_mean_map():
    patch = freeu(16, 1.5, 1.0, 1.0, 1.0, version=2)
    h = torch.rand(1, 64, 4, 4) + 0.1
    skip = torch.rand(1, 64, 4, 4)
    out, _ = patch(h.clone(), skip)
    mean = h.mean(1, keepdim=True)
    weight = (mean - mean.min()) / (mean.max() - mean.min())
    assert torch.allclose(out[:, :32], h[:, :32] * (0.5 * weight + 1), atol=1e-6)
    assert torch.equal(out[:, 32:], h[:, 32:])


def test_patches_compose_in_either_order_and_with_a_lora(tmp_path):
    from safetensors.torch import save_file

    from nodeflow.engine.context import RunContext
    from nodeflow.runtime.paths import Paths
    from nodeflow_nodes.lora import lora_loader_model_only
    from tests.test_lora import layers, random_lora

    model = unet_model()
    x, sigma = torch.randn(1, 4, 16, 16), torch.tensor([1.5])
    positive = [(torch.randn(1, 77, tiny_config().context_dim), {})]
    negative = [(torch.randn(1, 77, tiny_config().context_dim), {})]
    a = free_u(rescale_cfg_node(model, 0.5)[0], 1.1, 1.2, 0.9, 0.2)[0]
    b = rescale_cfg_node(free_u(model, 1.1, 1.2, 0.9, 0.2)[0], 0.5)[0]
    assert torch.equal(CFGDenoiser(a, positive, negative, 4.0)(x, sigma), CFGDenoiser(b, positive, negative, 4.0)(x, sigma))
    (tmp_path / "loras").mkdir()
    save_file({k: v.contiguous() for k, v in random_lora(layers(model.unet, ("input_blocks.1.1",)), seed=3).items()},
              str(tmp_path / "loras" / "style.safetensors"))
    [with_lora] = lora_loader_model_only(a, "style.safetensors", 1.0, RunContext(paths=Paths(models_dirs=(tmp_path,))))
    assert with_lora.unet_patches == a.unet_patches and with_lora.guidance_function is a.guidance_function
    assert not torch.allclose(CFGDenoiser(with_lora, positive, negative, 4.0)(x, sigma),
                              CFGDenoiser(a, positive, negative, 4.0)(x, sigma))


@pytest.mark.parametrize("node_id, defaults", [("RescaleCFG", {"multiplier": 0.7}),
                                               ("FreeU", {"b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2}),
                                               ("FreeU_V2", {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2})])
def test_declarations_follow_comfyui(node_id, defaults):
    from nodeflow.engine.registry import Registry
    from nodeflow.runtime.paths import Paths

    spec = Registry.load(Paths()).get(node_id)
    assert {i.name: i.default for i in spec.inputs if i.name != "model"} == defaults
    assert [o.type for o in spec.outputs] == ["MODEL"]


def comfy_style_zero_star(x, cond_d, uncond_d, out, cfg):
    """ComfyUI's CFGZeroStar post-CFG function, written out: alpha from the noise estimates."""
    positive, negative = (x - cond_d).reshape(x.shape[0], -1), (x - uncond_d).reshape(x.shape[0], -1)
    alpha = (positive * negative).sum(1, keepdim=True) / ((negative**2).sum(1, keepdim=True) + 1e-8)
    alpha = alpha.reshape(-1, 1, 1, 1)
    return out + uncond_d * (alpha - 1.0) + cfg * uncond_d * (1.0 - alpha)


def test_cfg_zero_star_and_cfg_norm_follow_comfyuis_post_cfg_functions():
    from nodeflow_nodes.model_advanced import cfg_norm, cfg_zero_star

    model = toy_model()
    x, sigma = torch.randn(2, 4, 8, 8), torch.tensor([2.0, 2.0])
    plain = CFGDenoiser(model, cond(1.0), cond(-1.0), 5.0)
    c, u = plain.predict(x, sigma, plain.entries(8, 8))
    guided = u + (c - u) * 5.0
    [zero_star] = cfg_zero_star(model)
    got = CFGDenoiser(zero_star, cond(1.0), cond(-1.0), 5.0)(x, sigma)
    assert torch.allclose(got, comfy_style_zero_star(x, c, u, guided, 5.0), atol=1e-5)
    [normed] = cfg_norm(model, 0.8)
    scale = (torch.norm(c, dim=1, keepdim=True) / (torch.norm(guided, dim=1, keepdim=True) + 1e-8)).clamp(0, 1)
    assert torch.allclose(CFGDenoiser(normed, cond(1.0), cond(-1.0), 5.0)(x, sigma), guided * scale * 0.8, atol=1e-5)
    [both] = cfg_norm(zero_star, 0.8)  # post functions apply in order
    first = comfy_style_zero_star(x, c, u, guided, 5.0)
    scale = (torch.norm(c, dim=1, keepdim=True) / (torch.norm(first, dim=1, keepdim=True) + 1e-8)).clamp(0, 1)
    assert torch.allclose(CFGDenoiser(both, cond(1.0), cond(-1.0), 5.0)(x, sigma), first * scale * 0.8, atol=1e-5)
    assert model.post_guidance == ()


def test_differential_diffusion_opens_each_pixel_for_its_share_of_the_steps():
    from nodeflow.sampling.ksampler import sample, schedule
    from nodeflow.sampling.model_patches import differential_diffusion
    from nodeflow_nodes.model_advanced import differential_diffusion as node

    model = toy_model()
    sigmas = schedule(model, "euler", "normal", 10)
    mask = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]).reshape(1, 1, 1, 5).expand(1, 4, 2, 5)
    function = differential_diffusion()
    ms = model.sampling
    opened = [function(ms, sigmas[i:i + 1], mask, sigmas)[0, 0, 0].tolist() for i in range(10)]
    assert opened[0] == [0, 0, 0, 0, 1]  # at the first step only mask 1 changes
    assert opened[-1] == [1, 1, 1, 1, 1]  # at the last (threshold 0: sigma_min), everything
    assert all(sum(a) <= sum(b) for a, b in zip(opened, opened[1:]))  # pixels open and stay open
    half = differential_diffusion(0.5)(ms, sigmas[:1], mask, sigmas)
    assert torch.allclose(half, 0.5 * opened_tensor(opened[0]) + 0.5 * mask)
    # through the sampler: pixels whose mask is 0 keep the source, the rest changes
    latent = {"samples": torch.ones(1, 4, 2, 5) * 0.5, "noise_mask": mask[0, 0]}
    [patched] = node(model, 1.0)
    out = sample(patched, seed=1, steps=10, cfg=3.0, sampler_name="euler", scheduler="normal",
                 positive=cond(1.0), negative=cond(-1.0), latent=latent)["samples"]
    plain = sample(model, seed=1, steps=10, cfg=3.0, sampler_name="euler", scheduler="normal",
                   positive=cond(1.0), negative=cond(-1.0), latent=latent)["samples"]
    assert torch.allclose(out[..., 0], latent["samples"][..., 0], atol=1e-5)
    assert not torch.allclose(out[..., 1:4], plain[..., 1:4], atol=1e-3)


def opened_tensor(row):
    return torch.tensor(row, dtype=torch.float32).reshape(1, 1, 1, 5).expand(1, 4, 2, 5)
