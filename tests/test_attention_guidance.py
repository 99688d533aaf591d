"""PerturbedAttentionGuidance and SelfAttentionGuidance (issue 15) against computations written
out here, on tiny random U-Nets (SD1-shaped, and SDXL-shaped: ADM vector, linear projections, a
middle block of two transformer blocks).

The references never use the U-Net's patch hooks: PAG's perturbed prediction comes from a copy of
the U-Net whose middle self-attention modules return to_out(to_v(x)); SAG's attention map from a
forward hook on the plain model's middle attention module and softmax(q k^T / sqrt(d)) by hand;
the blur, mask and grid from loops and index arithmetic; the predictions from single
``predict_denoised`` calls (or, with area prompts, the plain CFGDenoiser's list predictions).
The formulas are ComfyUI's (comfy_extras/nodes_pag.py, nodes_sag.py; post-CFG functions in
the order the patches were applied, after the CFG combination or RescaleCFG's).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from nodeflow.sampling import adm
from nodeflow.sampling.attention_guidance import (blur_where_attended, gaussian_blur, identity_attention,
                                                  token_grid)
from nodeflow.sampling.custom import Guider
from nodeflow.sampling.guidance import CFGDenoiser
from nodeflow.sampling.model import DiffusionModel, LatentFormat
from nodeflow.sampling.model_sampling import ModelSampling
from nodeflow_nodes.attention_guidance import perturbed_attention_guidance as pag_node
from nodeflow_nodes.attention_guidance import self_attention_guidance as sag_node
from nodeflow_nodes.model_advanced import cfg_norm, cfg_zero_star, rescale_cfg
from tests.test_model_patches import comfy_style_rescale, comfy_style_zero_star
from tests.test_unet_parity import random_unet, tiny_config

POOLED = 32


# float64 U-Nets: batched and single forwards, fused and written-out attention then agree far below
# the tolerances, so what the tests compare is the formulas
def sd1_model() -> DiffusionModel:
    return DiffusionModel(random_unet(tiny_config()).double(), ModelSampling.sd1(), LatentFormat(),
                          torch.device("cpu"), torch.float64)


def sdxl_model() -> DiffusionModel:
    config = tiny_config(num_heads=None, head_channels=16, use_linear_in_transformer=True, transformer_depth=(0, 1, 2),
                         middle_transformer_depth=2, adm_in_channels=POOLED + 6 * adm.SIZE_EMBEDDING)
    return DiffusionModel(random_unet(config, seed=1).double(), ModelSampling.sd1(), LatentFormat.sdxl(),
                          torch.device("cpu"), torch.float64, adm=adm.SDXL)


MODELS = {"sd1": sd1_model, "sdxl": sdxl_model}


def prompt(seed: int, model: DiffusionModel, **options) -> list:
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(1, 5, model.unet.config.context_dim, generator=generator)
    if model.adm_channels:
        options["pooled_output"] = torch.randn(1, POOLED, generator=generator)
    return [(context, options)]


def latent(height: int, width: int, seed: int = 7) -> torch.Tensor:
    return torch.randn(1, 4, height, width, generator=torch.Generator().manual_seed(seed))


def plain_prediction(model, x, sigma, conditioning, negative=False):
    """D of a one-entry list without area, by one plain forward."""
    [(context, options)] = conditioning
    y = model.encode_adm(options, x.shape[-1] * 8, x.shape[-2] * 8, negative)
    return model.predict_denoised(x, sigma, context.expand(x.shape[0], -1, -1),
                                  y=None if y is None else y.expand(x.shape[0], -1))


# ---------------------------------------------------------------- references written out


class ValuesOnly(nn.Module):
    """A self-attention module whose product is v: to_out(to_v(x))."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x, context=None, value=None):
        return self.attn.to_out(self.attn.to_v(x))


def perturbed_copy(model: DiffusionModel) -> DiffusionModel:
    """The model with every middle-block self-attention made the identity, by module surgery."""
    unet = copy.deepcopy(model.unet)
    for block in unet.middle_block[1].transformer_blocks:
        block.attn1 = ValuesOnly(block.attn1)
    return model.clone_with(unet=unet)


def middle_probabilities(model, x, sigma, conditioning, negative=True) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) of the middle block's first self-attention, (1, heads, N, N),
    from the tokens a forward hook sees in a plain forward."""
    attn = model.unet.middle_block[1].transformer_blocks[0].attn1
    seen = []
    handle = attn.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    try:
        plain_prediction(model, x, sigma, conditioning, negative)
    finally:
        handle.remove()
    [tokens] = seen  # (1, N, C)
    heads = attn.heads
    with torch.no_grad():
        q, k = attn.to_q(tokens), attn.to_k(tokens)
    dim = q.shape[-1] // heads
    q = q.reshape(1, -1, heads, dim).permute(0, 2, 1, 3)
    k = k.reshape(1, -1, heads, dim).permute(0, 2, 1, 3)
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim), dim=-1)


def reference_blur(image: torch.Tensor, sigma: float, size: int = 9) -> torch.Tensor:
    """Separable Gaussian blur with mirrored indices (reflection without repeating the edge), float64."""
    half = size // 2
    weights = [math.exp(-0.5 * ((i - half) / sigma) ** 2) for i in range(size)]
    weights = [w / sum(weights) for w in weights]

    def mirror(i: int, n: int) -> int:
        i = abs(i)
        return 2 * (n - 1) - i if i >= n else i

    image = image.double()
    height, width = image.shape[-2:]
    rows = torch.stack([sum(weights[t] * image[..., mirror(r + t - half, height), :] for t in range(size))
                        for r in range(height)], dim=-2)
    out = torch.stack([sum(weights[t] * rows[..., mirror(c + t - half, width)] for t in range(size))
                       for c in range(width)], dim=-1)
    return out.float()


def reference_mask(probabilities: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(b, 1, height, width): key j is set where sum_i mean_h p[h, i, j] > 1; keys are row-major
    on the rows x cols grid, and pixel (y, x) reads cell (y rows // height, x cols // width)."""
    batch, heads, queries, keys = probabilities.shape
    rows, cols = token_grid(keys, height, width)
    mask = torch.zeros(batch, 1, height, width)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                j = (y * rows // height) * cols + (x * cols // width)
                total = sum(float(probabilities[b, h, :, j].sum()) for h in range(heads)) / heads
                mask[b, 0, y, x] = float(total > 1.0)
    return mask


def sag_expected(model, x, sigma, positive, negative, cfg, scale, blur_sigma):
    c = plain_prediction(model, x, sigma, positive)
    u = plain_prediction(model, x, sigma, negative, negative=True)
    mask = reference_mask(middle_probabilities(model, x, sigma, negative), *x.shape[-2:])
    degraded = reference_blur(u, blur_sigma) * mask + u * (1 - mask)
    again = plain_prediction(model, x + degraded - u, sigma, negative, negative=True)
    return u + (c - u) * cfg + (degraded - again) * scale, mask


# ---------------------------------------------------------------- PAG


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_pag_equals_cfg_plus_the_perturbed_difference_and_scale_0_is_plain_cfg(family):
    model = MODELS[family]()
    x, sigma = latent(16, 16), torch.tensor([2.5])
    positive, negative = prompt(1, model), prompt(2, model)
    before = CFGDenoiser(model, positive, negative, 5.0)(x, sigma)
    c = plain_prediction(model, x, sigma, positive)
    u = plain_prediction(model, x, sigma, negative, negative=True)
    perturbed = plain_prediction(perturbed_copy(model), x, sigma, positive)
    assert (perturbed - c).abs().max() > 1e-3  # the perturbation matters here
    [pag] = pag_node(model, 2.0)
    denoiser = CFGDenoiser(pag, positive, negative, 5.0)
    torch.testing.assert_close(denoiser(x, sigma), u + (c - u) * 5.0 + (c - perturbed) * 2.0, atol=1e-5, rtol=0)
    assert denoiser.calls == 2  # the batched CFG forward, then the perturbed one
    [zero] = pag_node(model, 0.0)
    plain = CFGDenoiser(zero, positive, negative, 5.0)
    assert torch.equal(plain(x, sigma), before) and plain.calls == 1
    # the input MODEL is untouched: no patch on it, and it gives the old result
    assert model.post_guidance == () and not model.unet_patches and not pag.unet_patches
    assert torch.equal(CFGDenoiser(model, positive, negative, 5.0)(x, sigma), before)


def test_pags_extra_forward_runs_the_positive_list_alone_with_the_identity_middle_attention():
    model = sd1_model()
    x, sigma = latent(16, 16), torch.tensor([2.5])
    positive, negative = prompt(1, model), prompt(2, model)
    calls = []
    hook = model.unet.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((args[2].clone(), kwargs.get("patches"), kwargs.get("extra"))),
        with_kwargs=True)
    try:
        [pag] = pag_node(model, 2.0)
        CFGDenoiser(pag, positive, negative, 5.0)(x, sigma)
        assert len(calls) == 2
        (first, first_patches, _), (second, patches, extra) = calls
        assert first.shape[0] == 2 and first_patches is None  # negative and positive, unpatched
        assert torch.equal(second, positive[0][0])  # one image: the positive prompt only
        assert patches.replacement(("middle", 0), 0) is identity_attention
        assert patches.replacement(("input", 1), 0) is None and extra["cond_or_uncond"] == (0,)
        # at cfg 1 the negative is skipped (ComfyUI keeps its cfg-1 shortcut for PAG) and D = C + (C - P) s
        calls.clear()
        got = CFGDenoiser(pag, positive, negative, 1.0)(x, sigma)
        assert [context.shape[0] for context, _, _ in calls] == [1, 1]
    finally:
        hook.remove()
    c = plain_prediction(model, x, sigma, positive)
    perturbed = plain_prediction(perturbed_copy(model), x, sigma, positive)
    torch.testing.assert_close(got, c + (c - perturbed) * 2.0, atol=1e-5, rtol=0)


def test_pag_composes_with_rescale_cfg_and_post_cfg_patches_in_comfyuis_order():
    model = sd1_model()
    x, sigma = latent(16, 16), torch.tensor([1.5])
    positive, negative = prompt(1, model), prompt(2, model)
    c = plain_prediction(model, x, sigma, positive)
    u = plain_prediction(model, x, sigma, negative, negative=True)
    pag_term = (c - plain_prediction(perturbed_copy(model), x, sigma, positive)) * 2.0

    def run(patched):
        return CFGDenoiser(patched, positive, negative, 5.0)(x, sigma)

    # RescaleCFG replaces the combination, which comes first whatever the order of the nodes
    rescaled = comfy_style_rescale(x, sigma, c, u, 5.0, 0.7) + pag_term
    torch.testing.assert_close(run(rescale_cfg(pag_node(model, 2.0)[0], 0.7)[0]), rescaled, atol=1e-5, rtol=0)
    torch.testing.assert_close(run(pag_node(rescale_cfg(model, 0.7)[0], 2.0)[0]), rescaled, atol=1e-5, rtol=0)
    # post-CFG functions run in the order they were added
    guided = u + (c - u) * 5.0
    torch.testing.assert_close(run(cfg_zero_star(pag_node(model, 2.0)[0])[0]),
                               comfy_style_zero_star(x, c, u, guided + pag_term, 5.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(run(pag_node(cfg_zero_star(model)[0], 2.0)[0]),
                               comfy_style_zero_star(x, c, u, guided, 5.0) + pag_term, atol=1e-5, rtol=0)

    def norm(value):  # CFGNorm at strength 1: not additive, so the order shows
        ratio = torch.norm(c, dim=1, keepdim=True) / (torch.norm(value, dim=1, keepdim=True) + 1e-8)
        return value * ratio.clamp(0, 1)

    norm_then_pag = norm(guided) + pag_term
    pag_then_norm = norm(guided + pag_term)
    assert (norm_then_pag - pag_then_norm).abs().max() > 1e-3
    torch.testing.assert_close(run(pag_node(cfg_norm(model, 1.0)[0], 2.0)[0]), norm_then_pag, atol=1e-5, rtol=0)
    torch.testing.assert_close(run(cfg_norm(pag_node(model, 2.0)[0], 1.0)[0]), pag_then_norm, atol=1e-5, rtol=0)


@pytest.mark.parametrize("style", ["regular", "nested"])
def test_dual_cfg_guider_gives_pag_the_lists_of_its_guide_call(style):
    model = sd1_model()
    x, sigma = latent(16, 16), torch.tensor([2.0])
    cond1, cond2, negative = prompt(1, model), prompt(3, model), prompt(2, model)
    p1, p2 = plain_prediction(model, x, sigma, cond1), plain_prediction(model, x, sigma, cond2, negative=True)
    pn = plain_prediction(model, x, sigma, negative, negative=True)
    perturbed = perturbed_copy(model)
    [pag] = pag_node(model, 1.5)
    got = Guider(pag, (cond1, cond2, negative), 3.0, 2.0, f"dual-{style}").denoiser()(x, sigma)
    if style == "regular":  # guide(cond2 vs negative): PAG predicts cond2 again
        pag_term = (p2 - plain_prediction(perturbed, x, sigma, cond2, negative=True)) * 1.5
        expected = pn + (p2 - pn) * 2.0 + pag_term + (p1 - p2) * 3.0
    else:  # guide(cond1 vs cond2): PAG predicts cond1 again
        pag_term = (p1 - plain_prediction(perturbed, x, sigma, cond1)) * 1.5
        expected = pn + 2.0 * (p2 + (p1 - p2) * 3.0 + pag_term - pn)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- SAG: the pieces


def test_gaussian_blur_equals_a_mirrored_separable_convolution():
    image = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    for sigma in (2.0, 0.8, 5.0):
        torch.testing.assert_close(gaussian_blur(image, sigma), reference_blur(image, sigma), atol=1e-6, rtol=0)
    flat = torch.full((1, 4, 6, 6), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 2.0), flat)  # the kernel sums to 1
    assert torch.equal(gaussian_blur(image, 0.0), image)  # sigma 0: the limit, no blur


def test_the_token_grid_follows_the_latents_aspect_and_the_unets_own_layout():
    # ComfyUI's search: rows = the divisor of N nearest round(sqrt(N h / w)), +i tried before -i
    assert token_grid(16, 16, 16) == (4, 4)
    assert token_grid(8, 8, 16) == (2, 4) and token_grid(8, 16, 8) == (4, 2)
    assert token_grid(12, 13, 9) == (4, 3)
    assert token_grid(768, 128, 96) == (32, 24)  # SDXL 1024 x 768: middle block at 1/32
    assert token_grid(7, 10, 10) == (1, 7)  # ComfyUI gives up here; the search goes on to a divisor
    # odd latents: the grid is the middle block's feature map (SD1's 1/4 here, SDXL-shaped too)
    for model in (sd1_model(), sdxl_model()):
        for height, width in [(13, 9), (9, 13), (16, 12), (11, 11)]:
            shapes = []
            handle = model.unet.middle_block[1].register_forward_hook(
                lambda module, args, output: shapes.append(tuple(output.shape[-2:])))
            plain_prediction(model, latent(height, width), torch.tensor([1.0]), prompt(1, model))
            handle.remove()
            rows, cols = shapes[0]
            assert token_grid(rows * cols, height, width) == (rows, cols), (height, width)


def test_the_mask_blurs_where_the_keys_get_more_than_average_attention():
    generator = torch.Generator().manual_seed(3)
    probabilities = torch.softmax(torch.randn(2, 3, 12, 12, generator=generator) * 2.0, dim=-1)  # (b, heads, N, N)
    x0 = torch.randn(2, 4, 13, 9, generator=generator)
    mask = reference_mask(probabilities, 13, 9)
    assert 0 < float(mask.mean()) < 1
    expected = reference_blur(x0, 1.5) * mask + x0 * (1 - mask)
    torch.testing.assert_close(blur_where_attended(x0, probabilities, 1.5), expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- SAG: whole steps


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_sag_step_equals_the_written_out_computation(family):
    model = MODELS[family]()
    x, sigma = latent(16, 12), torch.tensor([3.0])
    positive, negative = prompt(1, model), prompt(2, model)
    [sag] = sag_node(model, 0.8, 1.5)
    denoiser = CFGDenoiser(sag, positive, negative, 4.0)
    got = denoiser(x, sigma)
    expected, mask = sag_expected(model, x, sigma, positive, negative, 4.0, 0.8, 1.5)
    assert 0 < float(mask.mean()) < 1  # a mask with both parts: the blur matters
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert denoiser.calls == 2  # the CFG forward (capturing), then the negative list again
    heads = model.unet.middle_block[1].transformer_blocks[0].attn1.heads
    [stored] = denoiser.run_state.values()  # the run's map, (1, heads, 4 x 3 tokens, 12)
    assert stored.shape == (1, heads, 12, 12)
    # scale 0: plain CFG (the capture's written-out attention equals the fused one)
    plain = CFGDenoiser(model, positive, negative, 4.0)(x, sigma)
    zero = CFGDenoiser(sag_node(model, 0.0, 1.5)[0], positive, negative, 4.0)
    torch.testing.assert_close(zero(x, sigma), plain, atol=1e-6, rtol=0)
    assert zero.calls == 1


def test_sag_runs_the_negative_at_cfg_1_and_adds_nothing_without_one():
    model = sd1_model()
    x, sigma = latent(16, 12), torch.tensor([3.0])
    positive, negative = prompt(1, model), prompt(2, model)
    [sag] = sag_node(model, 0.8, 1.5)
    denoiser = CFGDenoiser(sag, positive, negative, 1.0)
    expected, _ = sag_expected(model, x, sigma, positive, negative, 1.0, 0.8, 1.5)
    torch.testing.assert_close(denoiser(x, sigma), expected, atol=1e-5, rtol=0)
    assert denoiser.calls == 2  # ComfyUI's disable_cfg1_optimization: the negative still runs
    # no negative prompt (BasicGuider): no map is captured and SAG leaves the estimate alone
    alone = CFGDenoiser(sag, positive, [], 1.0)
    torch.testing.assert_close(alone(x, sigma), plain_prediction(model, x, sigma, positive), atol=1e-6, rtol=0)
    assert alone.run_state == {}
    # latents with a side of 4 or less are left alone (the blur's padding needs 5)
    small = latent(4, 8)
    torch.testing.assert_close(CFGDenoiser(sag, positive, negative, 4.0)(small, sigma),
                               CFGDenoiser(model, positive, negative, 4.0)(small, sigma), atol=1e-6, rtol=0)


def test_sag_with_an_area_prompt_uses_the_last_forward_with_a_negative_chunk():
    model = sd1_model()
    x, sigma = latent(16, 16), torch.tensor([2.0])
    area = (12, 12, 4, 4)  # (h, w, y, x): the middle block sees it as 3 x 3 tokens
    positive = prompt(1, model) + prompt(3, model, area=area)
    negative = prompt(2, model)
    [sag] = sag_node(model, 0.8, 1.5)
    got = CFGDenoiser(sag, positive, negative, 4.0)(x, sigma)
    # the forwards run [negative, positive] on the whole latent, then [negative, positive] on the
    # area (the negative's counterpart of the area, as ComfyUI adds it): the map is the area's
    plain = CFGDenoiser(model, positive, negative, 4.0)
    c, u = plain.predict(x, sigma, plain.entries(16, 16))
    h, w, y0, x0 = area
    probabilities = middle_probabilities(model, x[:, :, y0:y0 + h, x0:x0 + w], sigma, negative)
    assert probabilities.shape[-1] == 9
    mask = reference_mask(probabilities, 16, 16)  # 3 x 3 cells over the whole latent
    assert 0 < float(mask.mean()) < 1
    degraded = reference_blur(u, 1.5) * mask + u * (1 - mask)
    again = plain.predict(x + degraded - u, sigma, plain.entries(16, 16))[1]
    torch.testing.assert_close(got, u + (c - u) * 4.0 + (degraded - again) * 0.8, atol=1e-5, rtol=0)


def test_sag_keeps_its_map_per_run_and_never_changes_the_model():
    model = sd1_model()
    x, sigma = latent(16, 12), torch.tensor([3.0])
    positive, negative = prompt(1, model), prompt(2, model)
    before = CFGDenoiser(model, positive, negative, 4.0)(x, sigma)
    [sag] = sag_node(model, 0.8, 1.5)
    patches, post = sag.unet_patches, sag.post_guidance
    first = CFGDenoiser(sag, positive, negative, 4.0)
    result = first(x, sigma)
    second = CFGDenoiser(sag, positive, negative, 4.0)
    assert second.run_state == {} and len(first.run_state) == 1  # the map is the run's, not the model's
    assert torch.equal(second(x, sigma), result)
    other = latent(16, 12, seed=11)
    first(other, sigma)  # a later step replaces the run's map
    assert not torch.equal(next(iter(first.run_state.values())), next(iter(second.run_state.values())))
    assert sag.unet_patches is patches and sag.post_guidance is post and sag.uncond_at_cfg1
    assert model.post_guidance == () and not model.unet_patches and not model.uncond_at_cfg1
    assert torch.equal(CFGDenoiser(model, positive, negative, 4.0)(x, sigma), before)


def test_both_through_the_ksampler_and_the_declarations_follow_comfyui():
    from nodeflow.engine.registry import Registry
    from nodeflow.sampling.ksampler import sample

    model = sd1_model()
    positive, negative = prompt(1, model), prompt(2, model)
    start = {"samples": torch.zeros(1, 4, 8, 8)}

    def run(patched):
        return sample(patched, seed=5, steps=2, cfg=4.0, sampler_name="euler", scheduler="normal",
                      positive=positive, negative=negative, latent=start)["samples"]

    plain = run(model)
    for patched in (pag_node(model, 3.0)[0], sag_node(model, 0.5, 2.0)[0],
                    sag_node(pag_node(model, 3.0)[0], 0.5, 2.0)[0]):
        out = run(patched)
        assert torch.isfinite(out).all() and (out - plain).abs().max() > 1e-4
    assert torch.equal(run(model), plain)
    registry = Registry.load()
    pag, sag = registry.get("PerturbedAttentionGuidance"), registry.get("SelfAttentionGuidance")
    assert (pag.category, pag.display) == ("model_patches/unet", "PerturbedAttentionGuidance")
    assert (sag.category, sag.display) == ("_for_testing", "Self-Attention Guidance")
    assert [(i.name, i.default, i.min, i.max) for i in pag.inputs] == [("model", None, None, None),
                                                                      ("scale", 3.0, 0.0, 100.0)]
    assert [(i.name, i.default, i.min, i.max) for i in sag.inputs] == [("model", None, None, None),
                                                                      ("scale", 0.5, -2.0, 5.0),
                                                                      ("blur_sigma", 2.0, 0.0, 10.0)]
    assert [o.type for o in pag.outputs] == [o.type for o in sag.outputs] == ["MODEL"]
