"""SD2.1 unCLIP: unCLIPCheckpointLoader, unCLIPConditioning, and CheckpointLoaderSimple on unCLIP files
(issue 16).

The checkpoint is scaled down and written here in the original layout (stablediffusion's
ImageEmbeddingConditionedLatentDiffusion): the U-Net (our module's key names are the original's,
which diffusers' own converter confirms in the parity test) with an ADM input as wide as two image
embeddings, SD2's OpenCLIP text tower (tests.family_files), the CLIP image embedder's whole OpenCLIP
model under ``embedder.model.`` (the image tower by tests.test_clip_vision's converter, written from
OpenCLIP's names, plus the text side's leftovers) and the ``noise_augmentor.`` schedule buffers of
the original training code (their values from diffusers' DDPMScheduler).

References: the ADM vector against diffusers' StableUnCLIPImg2ImgPipeline.noise_image_embeddings
(the published formula: normalise, DDPM q_sample on the squaredcos_cap_v2 schedule, un-normalise,
append the noise level's timestep embedding) with the noise ComfyUI draws (its global generator
seeded with seed - 10); the U-Net with that vector against diffusers' UNet2DConditionModel with
class_embed_type="projection" (the Stable unCLIP U-Net) on the file's tensors.
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from nodeflow.engine.context import RunContext
from nodeflow.errors import ModelFileError
from nodeflow.image.clip_vision import ClipVisionOutput
from nodeflow.loading.detect import detect_kind
from nodeflow.models.unet import UNetModel
from nodeflow.runtime.paths import Paths
from nodeflow.sampling import adm
from nodeflow.sampling.unclip import unclip_vector
from nodeflow_nodes.loaders import checkpoint_loader_simple
from nodeflow_nodes.unclip import unclip_checkpoint_loader, unclip_conditioning
from tests.family_files import family_state_dict, prefixed, randomize, tiny_unet
from tests.test_clip_vision import SMALL, image, reference_model, text_tower_keys, to_original

diffusers = pytest.importorskip("diffusers")
from diffusers import DDPMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint  # noqa: E402
from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (  # noqa: E402
    StableUnCLIPImageNormalizer)

EMBED = SMALL["projection_dim"]  # the image embedding's width (ViT-L/14: 768, ViT-H/14: 1024)
U = "model.diffusion_model."



def noise_augmentor_buffers() -> dict[str, torch.Tensor]:
    """The schedule buffers the original CLIPEmbeddingNoiseAugmentation saves (register_schedule)."""
    betas = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").betas.double()
    cumulative = torch.cumprod(1 - betas, 0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), cumulative[:-1]])
    values = {"betas": betas, "alphas_cumprod": cumulative, "alphas_cumprod_prev": previous,
              "sqrt_alphas_cumprod": cumulative.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - cumulative).sqrt(),
              "log_one_minus_alphas_cumprod": (1 - cumulative).log(), "sqrt_recip_alphas_cumprod": (1 / cumulative).sqrt(),
              "sqrt_recipm1_alphas_cumprod": (1 / cumulative - 1).sqrt()}
    return {f"noise_augmentor.{k}": v.float() for k, v in values.items()}


def unclip_state_dict(seed: int = 0) -> tuple[dict, dict]:
    """(the checkpoint's tensors, the source models) of a scaled-down SD2.1 unCLIP file."""
    sd, sources = family_state_dict("sd2", seed)
    unet = randomize(UNetModel(replace(tiny_unet("sd2"), adm_in_channels=2 * EMBED)), seed + 7)
    vision = reference_model(seed + 8)
    sd = {k: v for k, v in sd.items() if not k.startswith(U)} | prefixed(U, unet.state_dict())
    sd |= prefixed("embedder.model.", to_original(vision.state_dict()) | text_tower_keys())
    sd |= noise_augmentor_buffers()
    return {k: v.contiguous() for k, v in sd.items()}, sources | {"unet": unet, "vision": vision}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("unclip")
    sd, sources = unclip_state_dict()
    (root / "checkpoints").mkdir()
    save_file(sd, str(root / "checkpoints" / "unclip.safetensors"))
    return root, sd, sources


def context(root) -> RunContext:
    return RunContext(paths=Paths(models_dirs=(root,)))


def embeds(*rows: float, width: int = EMBED, seed: int = 3) -> ClipVisionOutput:
    """A CLIP_VISION_OUTPUT whose image_embeds are random rows (one per value, scaled by it)."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(len(rows), width, generator=generator) * torch.tensor(rows)[:, None]
    return ClipVisionOutput(values, torch.zeros(len(rows), 5, 8), torch.zeros(len(rows), 5, 8))


def published(embedding: torch.Tensor, level: int, noise: torch.Tensor) -> torch.Tensor:
    """diffusers' Stable unCLIP noising of one embedding (1, D) at ``level`` with ``noise`` (1, D);
    mean 0 and deviation 1, the statistics ComfyUI uses (it never loads the files' others)."""
    pipeline = SimpleNamespace(image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embedding.shape[-1]),
                               image_noising_scheduler=DDPMScheduler(num_train_timesteps=1000,
                                                                     beta_schedule="squaredcos_cap_v2"))
    with torch.no_grad():
        return StableUnCLIPImg2ImgPipeline.noise_image_embeddings(pipeline, embedding, level, noise=noise)


def comfy_noise(seed: int, width: int, draws: int = 1) -> list[torch.Tensor]:
    """What ComfyUI's noise augmentor draws: ``torch.manual_seed(seed - 10)`` (its global generator),
    then ``draws`` unseeded (1, D) draws from that generator (the global state is restored after)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed - 10)
        return [torch.randn(1, width) for _ in range(draws)]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ---- loading

def test_both_loaders_read_an_unclip_checkpoint(models):
    root, sd, sources = models
    model, clip, vae = checkpoint_loader_simple("unclip.safetensors", context(root))
    assert model.adm == adm.SD2_UNCLIP and model.adm_channels == 2 * EMBED and model.family == "SD2.x"
    assert torch.equal(model.unet.label_emb[0][0].weight, sources["unet"].label_emb[0][0].weight)
    assert clip.width == sources["clip_h"].config.hidden_size
    *same, vision = unclip_checkpoint_loader("unclip.safetensors", context(root))
    assert torch.equal(same[0].unet.out[2].weight, model.unet.out[2].weight)
    pictures = image(batch=2, height=SMALL["image_size"], width=SMALL["image_size"])
    from nodeflow.image.clip_vision import clip_preprocess

    with torch.no_grad():
        expected = sources["vision"](pixel_values=clip_preprocess(pictures, SMALL["image_size"])).image_embeds
    got = vision.encode(pictures).image_embeds
    assert relative_error(got, expected) < 1e-5


def test_real_unclip_shapes_are_detected():
    for width in (768, 1024):  # unCLIP-L (ViT-L/14 embeddings), unCLIP-H (ViT-H/14)
        shapes = {U + "input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
                  U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, 1024),
                  U + "label_emb.0.0.weight": torch.zeros(1280, 2 * width)}
        assert detect_kind(shapes) == "sd2-unclip"


def test_other_checkpoints_are_refused_by_the_unclip_loader_on_one_line(tmp_path):
    sd, _ = family_state_dict("sd2")
    (tmp_path / "checkpoints").mkdir()
    save_file(sd, str(tmp_path / "checkpoints" / "plain.safetensors"))
    with pytest.raises(ModelFileError) as raised:
        unclip_checkpoint_loader("plain.safetensors", context(tmp_path))
    message = str(raised.value)
    assert "plain.safetensors: this SD2.x checkpoint has no CLIP image tower" in message and "\n" not in message


def test_unknown_keys_beside_the_unclip_parts_are_still_refused(tmp_path, models):
    _, sd, _ = models
    save_file(dict(sd, **{"surprise.weight": torch.zeros(1)}), str(tmp_path / "extra.safetensors"))
    from nodeflow.loading.checkpoint import load_checkpoint

    with pytest.raises(ModelFileError, match=r"extra\.safetensors: unexpected keys: surprise\.weight"):
        load_checkpoint(tmp_path / "extra.safetensors")


# ---- the ADM vector

@pytest.mark.parametrize("augmentation, strength, seed", [(0.0, 1.0, 0), (0.3, 1.0, 42), (1.0, -2.5, 7)])
def test_one_image_is_the_published_formula(augmentation, strength, seed):
    output = embeds(1.0)
    item = {"clip_vision_output": output, "strength": strength, "noise_augmentation": augmentation}
    got = unclip_vector([item], seed)
    [noise] = comfy_noise(seed, EMBED)
    expected = published(output.image_embeds, round(999 * augmentation), noise) * strength
    assert got.shape == (1, 2 * EMBED)
    assert relative_error(got, expected) < 1e-5
    assert not torch.allclose(unclip_vector([item], seed + 1)[:, :EMBED], got[:, :EMBED])  # the seed draws the noise


def test_several_images_are_summed_and_augmented_again():
    """Two entries (one with two images): each image noised with the same draw, weighted, summed;
    the sum's embedding half noised again at level round(999 x 0.05) with the generator's next draw."""
    first, second = embeds(1.0, 0.5, seed=4), embeds(2.0, seed=5)
    items = [{"clip_vision_output": first, "strength": 0.7, "noise_augmentation": 0.2},
             {"clip_vision_output": second, "strength": 1.5, "noise_augmentation": 0.0}]
    noise, merge_noise = comfy_noise(11, EMBED, draws=2)
    parts = [published(first.image_embeds[i:i + 1], 200, noise) * 0.7 for i in range(2)]
    parts.append(published(second.image_embeds, 0, noise) * 1.5)
    summed = torch.stack(parts).sum(0)
    expected = published(summed[:, :EMBED], 50, merge_noise)
    assert relative_error(unclip_vector(items, 11), expected) < 1e-5


def test_entries_without_an_image_get_zeros_and_a_wrong_width_is_named(models):
    root, _, _ = models
    model, *_ = checkpoint_loader_simple("unclip.safetensors", context(root))
    assert torch.equal(model.encode_adm({}, 64, 64, seed=5), torch.zeros(1, 2 * EMBED))
    item = {"clip_vision_output": embeds(1.0, width=EMBED + 2), "strength": 1.0, "noise_augmentation": 0.0}
    with pytest.raises(Exception, match=f"embeddings are {EMBED + 2} wide, this model takes {EMBED}"):
        model.encode_adm({"unclip_conditioning": [item]}, 64, 64)


def test_unclip_conditioning_appends_to_every_entry():
    output, other = embeds(1.0), embeds(2.0)
    conditioning = [(torch.zeros(1, 3, 8), {"strength": 0.5}), (torch.ones(1, 3, 8), {})]
    [once] = unclip_conditioning(conditioning, output, 0.8, 0.25)
    [twice] = unclip_conditioning(once, other, 1.0, 0.0)
    assert [options["unclip_conditioning"] for _, options in once] == [
        [{"clip_vision_output": output, "strength": 0.8, "noise_augmentation": 0.25}]] * 2
    assert [len(options["unclip_conditioning"]) for _, options in twice] == [2, 2]
    assert twice[0][1]["strength"] == 0.5 and "unclip_conditioning" not in conditioning[0][1]  # input unchanged
    assert unclip_conditioning(conditioning, output, 0.0, 0.5)[0] is conditioning  # strength 0: as it was


def test_the_sampler_seed_reaches_the_adm_vector(models):
    """KSampler's path (run_sampler): each CFGDenoiser resolves its entries with the run's seed."""
    from nodeflow.sampling.guidance import CFGDenoiser
    from nodeflow.sampling.ksampler import run_sampler
    from nodeflow.sampling.samplers import get_sampler

    root, _, _ = models
    model, *_ = checkpoint_loader_simple("unclip.safetensors", context(root))
    item = {"clip_vision_output": embeds(1.0), "strength": 1.0, "noise_augmentation": 0.5}
    positive = [(torch.zeros(1, 77, 64), {"unclip_conditioning": [item]})]
    made = []

    def guidance(max_batch):
        made.append(CFGDenoiser(model, positive, [(torch.zeros(1, 77, 64), {})], 2.0, None, max_batch))
        return made[-1]

    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    run_sampler(model, guidance, get_sampler("euler"), torch.tensor([1.0, 0.0]), latent, torch.zeros(1, 4, 8, 8), 1234)
    [positive_entries, negative_entries] = made[0].entries(8, 8)
    assert torch.equal(positive_entries[0].y, unclip_vector([item], 1234))
    assert torch.equal(negative_entries[0].y, torch.zeros(1, 2 * EMBED))


# ---- the U-Net

def diffusers_unclip_unet(sd: dict[str, torch.Tensor]) -> UNet2DConditionModel:
    """The Stable unCLIP U-Net (class_embed_type "projection") of tiny_unet("sd2") with the ADM input,
    holding the file's tensors through diffusers' own converter."""
    config = tiny_unet("sd2")
    widths = [config.model_channels * m for m in config.channel_mult]
    model = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=widths,
        down_block_types=["CrossAttnDownBlock2D"] * 2, up_block_types=["CrossAttnUpBlock2D"] * 2,
        layers_per_block=config.num_res_blocks, cross_attention_dim=config.context_dim,
        attention_head_dim=[w // 64 for w in widths], use_linear_projection=True,
        class_embed_type="projection", projection_class_embeddings_input_dim=2 * EMBED)
    model.load_state_dict(convert_ldm_unet_checkpoint(dict(sd), model.config), strict=True)
    return model.eval()


def test_the_unet_with_its_adm_vector_matches_diffusers(models):
    root, sd, _ = models
    model, *_ = checkpoint_loader_simple("unclip.safetensors", context(root))
    reference = diffusers_unclip_unet({k: v for k, v in sd.items() if k.startswith(U)})
    output = embeds(1.0, 0.5, seed=9)
    [noise] = comfy_noise(77, EMBED)
    class_labels = torch.cat([published(output.image_embeds[i:i + 1], 300, noise) for i in range(2)])  # (2, 2D)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    t = torch.tensor([999.0, 250.0])
    hidden = torch.randn(2, 77, 64, generator=generator)
    with torch.no_grad():
        expected = reference(x, t, encoder_hidden_states=hidden, class_labels=class_labels).sample
        got = model.unet(x, t, hidden, y=class_labels)
        unconditioned = model.unet(x, t, hidden, y=torch.zeros_like(class_labels))
    assert relative_error(got, expected) < 1e-4
    assert relative_error(unconditioned, expected) > 1e-2  # the ADM input matters here


# ---- a whole graph

def unclip_workflow(strength: float) -> dict:
    """unCLIPCheckpointLoader -> CLIPVisionEncode -> unCLIPConditioning -> KSampler, in ComfyUI's API format."""
    return {
        "1": {"class_type": "unCLIPCheckpointLoader", "inputs": {"ckpt_name": "unclip.safetensors"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "picture.png"}},
        "3": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["1", 3], "image": ["2", 0], "crop": "center"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a red square"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "6": {"class_type": "unCLIPConditioning", "inputs": {"conditioning": ["4", 0], "clip_vision_output": ["3", 0],
                                                              "strength": strength, "noise_augmentation": 0.1}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["6", 0], "negative": ["5", 0],
                                                   "latent_image": ["7", 0], "seed": 3, "steps": 2, "cfg": 4.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": f"unclip_{strength}"}},
    }


def test_a_comfyui_unclip_graph_runs_and_the_image_steers_it(tmp_path, models):
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.registry import Registry
    from nodeflow.formats import load_workflow

    root, _, _ = models
    (tmp_path / "in").mkdir()
    pixels = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in" / "picture.png")
    paths = Paths(models_dirs=(root,), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "tmp", assets_dir=tmp_path / "no-assets")
    executor = Executor(Registry.load(paths), paths)
    images = []
    for strength in (1.0, 0.0):
        path = tmp_path / f"unclip_{strength}.json"
        path.write_text(json.dumps(unclip_workflow(strength)))
        result = executor.run(load_workflow(path))
        [saved] = result.outputs["10"][0]["images"]
        images.append(np.asarray(Image.open(saved)).astype(np.float64))
    assert images[0].shape == (64, 64, 3) and images[0].std() > 0
    assert np.abs(images[0] - images[1]).mean() > 1.0  # with the image's vector vs the zero vector


def test_on_sdxl_the_images_replace_the_pooled_text_embedding():
    """SDXL revision: the noised embedding half stands in for pooled_output; two images merge at level 0."""
    output = embeds(1.0, 0.5, width=1280, seed=6)
    item = {"clip_vision_output": output, "strength": 0.8, "noise_augmentation": 0.1}
    options = {"unclip_conditioning": [item], "pooled_output": torch.ones(1, 1280)}
    got = adm.encode_adm(options, 512, 768, channels=2816, kind=adm.SDXL, seed=21)
    noise, merge_noise = comfy_noise(21, 1280, draws=2)
    summed = sum(published(output.image_embeds[i:i + 1], 100, noise) * 0.8 for i in range(2))
    expected = published(summed[:, :1280], 0, merge_noise)[:, :1280]
    assert relative_error(got[:, :1280], expected) < 1e-5
    assert torch.equal(got[:, 1280:], adm.encode_adm({"pooled_output": torch.ones(1, 1280)}, 512, 768,
                                                     channels=2816, kind=adm.SDXL)[:, 1280:])  # the sizes as before
