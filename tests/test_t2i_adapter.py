"""T2I-Adapters: the network against diffusers' T2IAdapter (full, light, SDXL) on random weights,
loading both layouts through ControlNetLoader, and applying one with ControlNetApplyAdvanced
(features at ComfyUI's input blocks, scaled by the strength, the adapter run once per image)."""

import pytest
import torch
from diffusers import T2IAdapter as DiffusersT2IAdapter
from safetensors.torch import save_file

from nodeflow.engine.context import RunContext
from nodeflow.errors import NodeflowError
from nodeflow.loading.controlnet import load_controlnet
from nodeflow.models.t2i_adapter import T2IAdapter, t2i_adapter_from_state_dict
from nodeflow.runtime.paths import Paths
from nodeflow.sampling.control_hooks import chain_residuals
from nodeflow_nodes.conditioning import clip_text_encode
from nodeflow_nodes.controlnet import controlnet_apply_advanced, controlnet_loader
from nodeflow_nodes.latent import empty_latent_image
from nodeflow_nodes.loaders import checkpoint_loader_simple
from nodeflow_nodes.sampling import ksampler
from tests.factories import write_tiny_checkpoint


def diffusers_adapter(adapter_type: str, channels, factor: int = 8, seed: int = 0, in_channels: int = 3):
    torch.manual_seed(seed)
    adapter = DiffusersT2IAdapter(in_channels=in_channels, channels=list(channels), num_res_blocks=2,
                                  downscale_factor=factor, adapter_type=adapter_type)
    with torch.no_grad():  # biases are zero at init: make every tensor matter
        for parameter in adapter.parameters():
            parameter.normal_(0, 0.1)
    return adapter.eval()


# The original (TencentARC) names of diffusers' keys, written out per layout for the two-block
# levels used here (independent of nodeflow.loading.t2i_adapter's converter).
FULL_NAMES = {  # diffusers prefix -> original prefix
    "adapter.conv_in.": "conv_in.",
    "adapter.body.0.resnets.0.": "body.0.", "adapter.body.0.resnets.1.": "body.1.",
    "adapter.body.1.in_conv.": "body.2.in_conv.",
    "adapter.body.1.resnets.0.": "body.2.", "adapter.body.1.resnets.1.": "body.3.",
    "adapter.body.2.in_conv.": "body.4.in_conv.",
    "adapter.body.2.resnets.0.": "body.4.", "adapter.body.2.resnets.1.": "body.5.",
    "adapter.body.3.resnets.0.": "body.6.", "adapter.body.3.resnets.1.": "body.7.",
}
LIGHT_NAMES = {f"adapter.body.{i}.{a}": f"body.{i}.{b}" for i in range(3)
               for a, b in (("in_conv.", "in_conv."), ("out_conv.", "out_conv."),
                            ("resnets.0.", "body.0."), ("resnets.1.", "body.1."))}


def to_original(sd: dict, names: dict) -> dict:
    out = {}
    for key, value in sd.items():
        prefix = max((p for p in names if key.startswith(p)), key=len)  # KeyError-free: every key is listed
        out[names[prefix] + key[len(prefix):]] = value.clone()
    return out


CASES = {  # name: (diffusers adapter_type, channels, unshuffle, key names, hint size)
    "full": ("full_adapter", (32, 64), 8, FULL_NAMES, 64),
    "light": ("light_adapter", (32, 64), 8, LIGHT_NAMES, 64),
    "full-xl": ("full_adapter_xl", (32, 64, 128, 128), 16, FULL_NAMES, 128),
}


@pytest.mark.parametrize("case", CASES)
def test_adapter_network_equals_diffusers(case):
    adapter_type, channels, factor, names, size = CASES[case]
    reference = diffusers_adapter(adapter_type, channels, factor)
    ours = t2i_adapter_from_state_dict(to_original(reference.state_dict(), names))
    assert ours.config.kind == ("light" if case == "light" else "full")
    assert ours.config.xl == (case == "full-xl")
    hint = torch.rand(2, 3, size, size)
    with torch.no_grad():
        expected, got = reference(hint), ours(hint)
    assert len(got) == len(expected) == len(ours.config.channels)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", ["full", "light"])
def test_controlnet_loader_reads_both_layouts(case, tmp_path):
    adapter_type, channels, factor, names, size = CASES[case]
    reference = diffusers_adapter(adapter_type, channels, factor, seed=3)
    save_file({k: v.contiguous() for k, v in to_original(reference.state_dict(), names).items()},
              str(tmp_path / "original.safetensors"))
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "diffusers.safetensors"))
    reference.save_pretrained(tmp_path / "folder")
    hint = torch.rand(1, 3, size, size)
    with torch.no_grad():
        expected = reference(hint)
        for path in ("original.safetensors", "diffusers.safetensors", "folder"):
            adapter = load_controlnet(tmp_path / path)
            assert isinstance(adapter, T2IAdapter) and adapter.source == path
            for a, b in zip(adapter(hint), expected, strict=True):
                assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), path


def test_hint_size_rounds_up_to_the_unshuffle_factor():
    sd = to_original(diffusers_adapter("full_adapter_xl", (32, 64, 128, 128), 16).state_dict(), FULL_NAMES)
    xl = t2i_adapter_from_state_dict(sd)
    assert xl.hint_size(72, 40) == (80, 48) and xl.hint_size(64, 64) == (64, 64)
    assert xl.family == ""  # set by the loader only
    sd1 = t2i_adapter_from_state_dict(to_original(diffusers_adapter("full_adapter", (32, 64)).state_dict(), FULL_NAMES))
    assert sd1.hint_size(72, 40) == (72, 40)


# ----- applied to a tiny SD1 checkpoint -------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny checkpoint (U-Net: 32 channels x (1, 2), one res block per level: input blocks
    0 conv, 1 res, 2 down, 3 res) and a full adapter for it (features 32 and 64 wide)."""
    root = tmp_path_factory.mktemp("t2i")
    write_tiny_checkpoint(root / "checkpoints" / "tiny.safetensors")
    reference = diffusers_adapter("full_adapter", (32, 64), seed=7)
    (root / "controlnet").mkdir()
    save_file({k: v.contiguous() for k, v in to_original(reference.state_dict(), FULL_NAMES).items()},
              str(root / "controlnet" / "adapter.safetensors"))
    ctx = RunContext(paths=Paths(models_dirs=(root,)))
    model, clip, _ = checkpoint_loader_simple("tiny.safetensors", ctx)
    (positive,) = clip_text_encode("a red square", clip, ctx)
    (negative,) = clip_text_encode("", clip, ctx)
    (adapter,) = controlnet_loader("adapter.safetensors", ctx)
    image = torch.zeros(1, 64, 64, 3)
    image[:, 16:48, 16:48] = 1.0
    return ctx, model, positive, negative, adapter, image, reference


def sample(tiny, strength, steps=2, spy=None):
    ctx, model, positive, negative, adapter, image, _ = tiny
    pos, neg = controlnet_apply_advanced(positive, negative, adapter, image, strength, 0.0, 1.0)
    (latent,) = empty_latent_image(64, 64, 1)
    handle = None
    if spy is not None:
        handle = model.unet.register_forward_pre_hook(lambda m, a, kw: spy.append(kw.get("control")),
                                                      with_kwargs=True)
    try:
        (out,) = ksampler(model, 3, steps, 4.0, "euler", "normal", pos, neg, latent, 1.0, ctx)
    finally:
        if handle is not None:
            handle.remove()
    return out["samples"]


def test_the_adapter_changes_the_image_and_strength_zero_does_not(tiny):
    plain = sample(tiny, 0.0)
    ctx, model, positive, negative, *_ = tiny
    (latent,) = empty_latent_image(64, 64, 1)
    (without,) = ksampler(model, 3, 2, 4.0, "euler", "normal", positive, negative, latent, 1.0, ctx)
    assert torch.equal(plain, without["samples"])
    assert not torch.allclose(sample(tiny, 1.0), plain, atol=1e-3)


def test_features_land_at_the_last_input_block_of_each_level(tiny):
    ctx, model, positive, negative, adapter, image, reference = tiny
    seen = []
    sample(tiny, 0.75, spy=seen)
    controls = [c for c in seen if c is not None]
    assert controls and len(controls) == len(seen)
    hint = image.movedim(-1, 1)  # 64 x 64 for an 8 x 8 latent: no resize
    with torch.no_grad():
        features = reference(hint)  # diffusers' adapter on the same weights
    for control in controls:  # added to the input blocks' outputs (ComfyUI's 'input' control), not the skips
        assert len(control.inputs) == len(control.skips) == len(model.unet.input_blocks) == 4
        nonzero = [i for i, s in enumerate(control.inputs) if s.abs().sum() > 0]
        assert nonzero == [1, 3]  # ComfyUI: [None, feature] per level for one res block per level
        assert torch.allclose(control.inputs[1], 0.75 * features[0].expand_as(control.inputs[1]), atol=1e-5)
        assert torch.allclose(control.inputs[3], 0.75 * features[1].expand_as(control.inputs[3]), atol=1e-5)
        assert all(float(s.abs().sum()) == 0.0 for s in control.skips)
        assert float(control.middle.abs().sum()) == 0.0


def test_the_adapter_runs_once_per_image_not_per_step(tiny):
    ctx, model, positive, negative, adapter, image, _ = tiny
    calls = []
    handle = adapter.register_forward_hook(lambda *a: calls.append(1))
    try:
        pos, neg = controlnet_apply_advanced(positive, negative, adapter, image, 1.0, 0.0, 1.0)
        (latent,) = empty_latent_image(64, 64, 1)
        ksampler(model, 3, 4, 4.0, "euler", "normal", pos, neg, latent, 1.0, ctx)
    finally:
        handle.remove()
    assert len(calls) == 1


def test_residuals_scale_with_strength_and_refuse_a_model_they_do_not_fit(tiny):
    ctx, model, positive, negative, adapter, image, _ = tiny
    x, t, context, sigma = torch.randn(2, 4, 8, 8), torch.tensor([500.0, 500.0]), torch.randn(2, 77, 32), torch.tensor([3.0, 3.0])
    hooks = [controlnet_apply_advanced(positive, negative, adapter, image, s, 0.0, 1.0)[0][0][1]["control"]
             for s in (1.0, 0.5)]
    full, half = (chain_residuals(h, x, t, context, sigma, model, halves=2) for h in hooks)
    assert full.inputs[1].abs().sum() > 0
    assert all(torch.allclose(a * 0.5, b) for a, b in zip(full.inputs, half.inputs))
    light = load_controlnet_light(ctx)  # features 32, 64, 64 wide: three levels for a two-level U-Net
    hook = controlnet_apply_advanced(positive, negative, light, image, 1.0, 0.0, 1.0)[0][0][1]["control"]
    with pytest.raises(NodeflowError, match="does not fit"):
        chain_residuals(hook, x, t, context, sigma, model, halves=2)


def load_controlnet_light(ctx):
    root = ctx.paths.models_dirs[0]
    reference = diffusers_adapter("light_adapter", (32, 64))
    save_file({k: v.contiguous() for k, v in to_original(reference.state_dict(), LIGHT_NAMES).items()},
              str(root / "controlnet" / "light.safetensors"))
    return controlnet_loader("light.safetensors", ctx)[0]


def test_input_features_reach_the_later_blocks_as_comfyuis_apply_control():
    """A feature added after input block i changes block i + 1's input as well as skip i (ComfyUI
    adds it to h before keeping h as the skip), unlike a ControlNet residual (skip only)."""
    from nodeflow.models.unet import ControlResiduals
    from tests.test_unet_parity import random_unet, tiny_config

    unet = random_unet(tiny_config())
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=generator)
    t, context = torch.tensor([500.0]), torch.randn(1, 5, unet.config.context_dim, generator=generator)
    zero = torch.zeros(())
    blocks = len(unet.input_blocks)
    feature = torch.randn(1, unet.config.model_channels, 8, 8, generator=generator)
    seen = []
    hook = unet.input_blocks[2].register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        plain = unet(x, t, context)
        as_input = unet(x, t, context, control=ControlResiduals([zero] * blocks, zero, [zero, feature] + [zero] * (blocks - 2)))
        as_skip = unet(x, t, context, control=ControlResiduals([zero, feature] + [zero] * (blocks - 2), zero))
    finally:
        hook.remove()
    assert torch.allclose(seen[1], seen[0] + feature, atol=1e-6)  # block 2 saw the feature
    assert torch.allclose(seen[2], seen[0], atol=1e-6)  # a skip residual does not reach it
    assert not torch.allclose(as_input, as_skip, atol=1e-4) and not torch.allclose(as_input, plain, atol=1e-4)
