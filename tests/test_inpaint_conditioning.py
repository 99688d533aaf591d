"""InpaintModelConditioning, and what an inpainting model (9 input channels) is given: ComfyUI's
[mask, masked latent] after the scaled noisy latent, from the conditioning or from the latent's
noise mask; a normal model runs as without it."""

import torch
import torch.nn.functional as F

from nodeflow.engine.registry import Registry
from nodeflow.sampling.custom import Guider, SamplerChoice
from nodeflow.sampling.ksampler import run_sampler, sample, schedule
from nodeflow_nodes.inpaint import inpaint_model_conditioning
from tests.toy_models import ToyUNet, cond, toy_model

SCALE = 0.18215  # SD1's latent scale (the toy models' LatentFormat)


class BlockVAE:
    """A stand-in VAE: each latent cell is its 8 x 8 block's mean RGB and the block's mean
    brightness; records every image it encodes. Sizes are centre-cropped to multiples of 8, as the
    real VAE's encode does."""

    downscale = 8

    def __init__(self):
        self.encoded = []

    def encode(self, image):
        height, width = image.shape[1] // 8 * 8, image.shape[2] // 8 * 8
        top, left = (image.shape[1] % 8) // 2, (image.shape[2] % 8) // 2
        image = image[:, top:top + height, left:left + width, :3]
        self.encoded.append(image.clone())
        pooled = F.avg_pool2d(image.movedim(-1, 1), 8)  # (B, 3, h, w)
        return torch.cat([pooled, pooled.mean(1, keepdim=True)], 1)


class SpyUNet(ToyUNet):
    """The toy U-Net, recording every input it is given."""

    def __init__(self, in_channels):
        super().__init__(in_channels)
        self.inputs = []

    def forward(self, x, timesteps, context, control=None):
        self.inputs.append(x.clone())
        return super().forward(x, timesteps, context, control)


def block_mask(values, block=8):
    """A pixel mask of block x block squares with the given (h, w) values."""
    return torch.tensor(values).repeat_interleave(block, 0).repeat_interleave(block, 1)[None]


def settings(**changes):
    return dict(seed=3, steps=4, cfg=4.0, sampler_name="euler", scheduler="normal",
                positive=cond(1.0, pooled_output=torch.ones(1, 8)), negative=cond(-1.0)) | changes


# ---------------------------------------------------------------- the node


def test_conditionings_carry_the_grey_masked_image_and_the_mask():
    vae = BlockVAE()
    pixels = torch.rand(2, 20, 27, 3, generator=torch.Generator().manual_seed(0))  # cropped to 16 x 24 at (2, 1)
    mask = torch.zeros(1, 20, 27)
    mask[0, 4:9, 3:12] = 0.7  # rounds to 1: greyed
    mask[0, 12:, 20:] = 0.3  # rounds to 0: kept, yet given on as 0.3
    positive, negative = cond(1.0, pooled_output=torch.ones(1, 8)), cond(-1.0)
    before = [dict(options) for _, options in positive + negative]
    out_positive, out_negative, latent = inpaint_model_conditioning(positive, negative, vae, pixels, mask, True)

    cropped, cropped_mask = pixels[:, 2:18, 1:25], mask[:, None, 2:18, 1:25]
    grey = cropped.clone()
    grey[:, 2:7, 2:11] = 0.5  # the 0.7 region, moved by the crop
    assert torch.equal(vae.encoded[0], grey)  # first the masked image ...
    assert torch.equal(vae.encoded[1], cropped)  # ... then the whole image
    for entries, original in ((out_positive, positive), (out_negative, negative)):
        (context, options), = entries
        assert context is original[0][0]
        assert torch.equal(options["concat_latent_image"], BlockVAE().encode(grey))
        assert torch.equal(options["concat_mask"], cropped_mask)  # (B, 1, H, W), soft values kept
    assert out_positive[0][1]["pooled_output"] is positive[0][1]["pooled_output"]
    assert [dict(options) for _, options in positive + negative] == before  # inputs untouched
    assert torch.equal(latent["samples"], BlockVAE().encode(pixels))  # the unmasked image
    assert torch.equal(latent["noise_mask"], cropped_mask)


def test_noise_mask_off_leaves_the_latent_without_one_and_masks_are_resized():
    vae = BlockVAE()
    pixels = torch.rand(1, 16, 16, 3)
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # (H, W), resized bilinearly: columns 1, 1, ..., 0
    positive, _, latent = inpaint_model_conditioning(cond(1.0), cond(0.0), vae, pixels, mask, False)
    assert set(latent) == {"samples"}
    resized = positive[0][1]["concat_mask"]
    assert resized.shape == (1, 1, 16, 16)
    assert torch.equal(resized[0, 0, :, :4], torch.ones(16, 4)) and torch.equal(resized[0, 0, :, 12:], torch.zeros(16, 4))
    assert torch.equal(vae.encoded[0][:, :, :8], torch.full((1, 16, 8, 3), 0.5))  # left half greyed (>= 0.5)
    assert torch.equal(vae.encoded[0][:, :, 8:], pixels[:, :, 8:])


def test_declaration():
    spec = Registry.load().get("InpaintModelConditioning")
    assert [i.name for i in spec.inputs] == ["positive", "negative", "vae", "pixels", "mask", "noise_mask"]
    assert spec.input("noise_mask").default is True
    assert [(o.type, o.label) for o in spec.outputs] == [("CONDITIONING", "positive"), ("CONDITIONING", "negative"),
                                                         ("LATENT", "latent")]
    assert spec.category == "conditioning/inpaint"


# ---------------------------------------------------------------- what the model receives


def concat_seen(unet):
    """The extra channels of every call, after checking they are the same in every row."""
    extras = torch.cat([x[:, 4:] for x in unet.inputs])  # (calls x rows, 5, h, w)
    assert all(torch.equal(row, extras[0]) for row in extras)
    return extras[0]


def test_inpainting_model_gets_mask_then_masked_latent_from_the_conditioning():
    model = toy_model(unet=SpyUNet(9))
    pixels = torch.rand(1, 32, 24, 3, generator=torch.Generator().manual_seed(1))
    mask = block_mask([[0.0, 0.7, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.0], [0.6, 0.0, 0.0]])  # 32 x 24
    positive, negative, latent = inpaint_model_conditioning(cond(1.0), cond(-1.0), BlockVAE(), pixels, mask, True)
    sample(model, **settings(positive=positive, negative=negative, latent=latent))

    assert {x.shape for x in model.unet.inputs} == {(2, 9, 4, 3)}  # positive and negative, batched
    extra = concat_seen(model.unet)
    expected_mask = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # rounded
    assert torch.equal(extra[0], expected_mask)
    grey = pixels.clone()
    grey[0][mask[0] > 0.5] = 0.5
    torch.testing.assert_close(extra[1:], BlockVAE().encode(grey)[0] * SCALE)  # in the model's space


def test_normal_model_ignores_the_inpainting_options():
    pixels = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(2))
    mask = block_mask([[1.0, 0.0], [0.0, 0.0]])
    positive, negative, latent = inpaint_model_conditioning(cond(1.0), cond(-1.0), BlockVAE(), pixels, mask, True)
    with_options = toy_model(unet=SpyUNet(4))
    out = sample(with_options, **settings(positive=positive, negative=negative, latent=latent))
    plain = toy_model(unet=SpyUNet(4))
    expected = sample(plain, **settings(positive=cond(1.0), negative=cond(-1.0), latent=latent))
    assert {x.shape[1] for x in with_options.unet.inputs} == {4}
    assert torch.equal(out["samples"], expected["samples"])
    # the noise mask still keeps the unmasked cells (the sampler's own inpainting)
    assert torch.allclose(out["samples"][..., 1, :], latent["samples"][..., 1, :], atol=1e-5)
    assert not torch.allclose(out["samples"][..., 0, 0], latent["samples"][..., 0, 0], atol=1e-3)


def test_inpainting_model_with_a_vae_encode_for_inpaint_latent_uses_the_noise_mask():
    model = toy_model(unet=SpyUNet(9))
    samples = torch.randn(1, 4, 3, 2, generator=torch.Generator().manual_seed(4))
    noise_mask = block_mask([[0.0, 1.0], [0.4, 0.0], [0.8, 1.0]])[None]  # (1, 1, 24, 16)
    sample(model, **settings(latent={"samples": samples, "noise_mask": noise_mask}))
    extra = concat_seen(model.unet)
    assert torch.equal(extra[0], torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 1.0]]))
    torch.testing.assert_close(extra[1:], samples[0] * SCALE)  # the latent itself, scaled


def test_inpainting_model_without_any_mask_sees_a_blank_image():
    model = toy_model(unet=SpyUNet(9))
    sample(model, **settings(latent={"samples": torch.zeros(1, 4, 2, 2)}))
    extra = concat_seen(model.unet)
    assert torch.equal(extra[0], torch.ones(2, 2))
    blank = torch.tensor([0.8223, -0.6876, 0.6364, 0.1380]).view(4, 1, 1).expand(4, 2, 2)
    assert torch.equal(extra[1:], blank)


def test_concat_is_spread_over_the_batch_and_resized_to_the_latent():
    model = toy_model(unet=SpyUNet(9))
    image = torch.stack([torch.full((4, 2, 2), 1.0), torch.full((4, 2, 2), 2.0)])  # 2 images, 2 x 2 cells
    mask = torch.ones(1, 1, 16, 16)
    positive = cond(1.0, concat_latent_image=image, concat_mask=mask)
    sample(model, **settings(cfg=1.0, positive=positive, latent={"samples": torch.zeros(4, 4, 4, 4)}))
    x = model.unet.inputs[0]
    assert x.shape == (4, 9, 4, 4)
    assert torch.equal(x[:, 4], torch.ones(4, 4, 4))  # the mask resized to the 4 x 4 latent
    # ComfyUI's resize_to_batch_size: 2 -> 4 gives images 0, 0, 1, 1 (constant images stay constant)
    torch.testing.assert_close(x[:, 5:].mean(dim=(1, 2, 3)), torch.tensor([1.0, 1.0, 2.0, 2.0]) * SCALE)


def test_custom_sampling_guiders_give_the_concat_too():
    pixels = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(5))
    mask = block_mask([[0.0, 1.0], [0.0, 0.0]])
    positive, negative, latent = inpaint_model_conditioning(cond(1.0), cond(-1.0), BlockVAE(), pixels, mask, True)
    expected_mask = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    for conds, style in (((positive, negative), "cfg"), ((positive, positive, negative), "dual-regular")):
        model = toy_model(unet=SpyUNet(9))
        guider = Guider(model, conds, 3.0, 2.0, style)
        sigmas = schedule(model, "euler", "normal", 3)
        run_sampler(model, guider.denoiser, SamplerChoice("euler"), sigmas, latent, torch.zeros(1, 4, 2, 2), 0)
        extra = concat_seen(model.unet)
        assert torch.equal(extra[0], expected_mask), style
        assert model.unet.inputs[0].shape[1] == 9


def test_a_real_inpainting_unet_samples_with_either_inpainting_path(tmp_path):
    from nodeflow.loading.checkpoint import load_checkpoint
    from nodeflow_nodes.vae import vae_encode_for_inpaint
    from tests.factories import write_tiny_checkpoint

    checkpoint = load_checkpoint(write_tiny_checkpoint(tmp_path / "inpaint.safetensors", inpainting=True))
    assert checkpoint.model.in_channels == 9
    pixels, mask = torch.rand(1, 32, 32, 3), block_mask([[0.0, 1.0], [0.0, 0.0]], block=16)
    context = checkpoint.clip.encode("a red circle")[0]
    positive, negative = [(context, {})], [(torch.zeros_like(context), {})]
    conditioned = inpaint_model_conditioning(positive, negative, checkpoint.vae, pixels, mask, True)
    (encoded,) = vae_encode_for_inpaint(pixels, checkpoint.vae, mask, 6)
    for positive, negative, latent in (conditioned, (positive, negative, encoded)):
        out = sample(checkpoint.model, **settings(steps=2, positive=positive, negative=negative, latent=latent))
        assert out["samples"].shape == (1, 4, 4, 4) and torch.isfinite(out["samples"]).all()
