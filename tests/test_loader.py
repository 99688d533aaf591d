"""Checkpoint files: strict loading, detection, safety, clear errors naming the file."""

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import ModelFileError
from nodeflow.loading.files import read_state_dict
from nodeflow.loading.checkpoint import load_checkpoint, load_vae
from tests.factories import tiny_state_dict, write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture(scope="module")
def single(checkpoint_path):
    return load_checkpoint(checkpoint_path)


def test_round_trip_loads_all_three_models(single):
    checkpoint = single
    assert checkpoint.kind == "sd1"
    sd = tiny_state_dict()
    parts = {"model.diffusion_model.": checkpoint.model.unet, "first_stage_model.": checkpoint.vae.model}
    for prefix, module in parts.items():  # every tensor of the file, bit-exact, and nothing else
        loaded = module.state_dict()
        assert sorted(prefix + k for k in loaded) == sorted(k for k in sd if k.startswith(prefix))
        assert all(torch.equal(v, sd[prefix + k].float()) for k, v in loaded.items())
    text = {k.removeprefix("text_model."): v for k, v in checkpoint.clip.model.state_dict().items()
            if not k.endswith("position_ids")}
    prefix = "cond_stage_model.transformer.text_model."
    assert sorted(text) == sorted(k.removeprefix(prefix) for k in sd if k.startswith(prefix))
    assert all(torch.equal(v, sd[prefix + k].float()) for k, v in text.items())
    cond, pooled = checkpoint.clip.encode("a red circle")
    assert cond.shape == (1, 77, 32)
    image = checkpoint.vae.decode(torch.zeros(1, 4, 4, 4))
    assert image.shape == (1, 32, 32, 3) and 0 <= float(image.min()) and float(image.max()) <= 1


def test_inpainting_checkpoint_loads(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "inpaint.safetensors", inpainting=True)
    checkpoint = load_checkpoint(path)
    assert checkpoint.kind == "sd1-inpaint" and checkpoint.model.in_channels == 9


def test_unexpected_and_missing_keys_are_listed(tmp_path):
    sd = tiny_state_dict()
    sd["something.else"] = torch.zeros(1)
    save_file(sd, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ModelFileError, match="extra.safetensors: unexpected keys: something.else"):
        load_checkpoint(tmp_path / "extra.safetensors")
    sd = tiny_state_dict()
    del sd["model.diffusion_model.out.2.bias"]
    save_file(sd, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelFileError, match="missing.safetensors.*U-Net.*out.2.bias"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_known_extras_are_ignored(tmp_path):
    sd = tiny_state_dict()
    sd["model_ema.decay"] = torch.tensor(0.999)
    sd["alphas_cumprod"] = torch.zeros(1000)
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_file(sd, str(tmp_path / "extras.safetensors"))
    assert load_checkpoint(tmp_path / "extras.safetensors").kind == "sd1"


def test_keys_without_text_model_segment(tmp_path):
    sd = {k.replace("transformer.text_model.", "transformer."): v for k, v in tiny_state_dict().items()}
    save_file(sd, str(tmp_path / "old.safetensors"))
    assert load_checkpoint(tmp_path / "old.safetensors").clip.encode("x")[0].shape == (1, 77, 32)


def test_plain_tensor_ckpt_loads_like_safetensors(tmp_path, single):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": tiny_state_dict(), "global_step": 1}, path)
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "sd1"
    for a, b in zip(ckpt.model.unet.state_dict().values(), single.model.unet.state_dict().values()):
        assert torch.equal(a, b)


def test_standalone_vae_with_and_without_prefix(tmp_path):
    vae_sd = {k: v for k, v in tiny_state_dict().items() if k.startswith("first_stage_model.")}
    save_file(vae_sd, str(tmp_path / "a.safetensors"))
    save_file({k.removeprefix("first_stage_model."): v for k, v in vae_sd.items()}, str(tmp_path / "b.safetensors"))
    a, b = load_vae(tmp_path / "a.safetensors"), load_vae(tmp_path / "b.safetensors")
    z = torch.randn(1, 4, 2, 2)
    assert torch.equal(a.decode(z), b.decode(z))
    with pytest.raises(ModelFileError, match="this is an SD1.x checkpoint"):
        load_vae(write_tiny_checkpoint(tmp_path / "full.safetensors"))


def test_scaling_factor_and_heads_from_metadata(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "meta.safetensors",
                                 metadata={"nodeflow.vae.scaling_factor": "0.5", "nodeflow.unet.num_heads": "4"})
    checkpoint = load_checkpoint(path)
    assert checkpoint.model.latent_format.scale_factor == 0.5 and checkpoint.vae.scaling_factor == 0.5
    assert checkpoint.model.unet.config.num_heads == 4


def write_diffusers_folder(root, sd: dict) -> None:
    """The tiny checkpoint as diffusers' save_pretrained writes it (converted by diffusers' own code)."""
    diffusers = pytest.importorskip("diffusers")
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    sd = {k: v.float() for k, v in sd.items()}
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], block_out_channels=[32, 64], layers_per_block=1,
        cross_attention_dim=32, attention_head_dim=8)
    unet.load_state_dict(convert_ldm_unet_checkpoint(sd, unet.config), strict=True)
    vae = diffusers.AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                                  block_out_channels=[32] * 4, layers_per_block=1, latent_channels=4)
    vae.load_state_dict(convert_ldm_vae_checkpoint(sd, vae.config), strict=True)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=1, max_position_embeddings=77, hidden_act="quick_gelu"))
    own = clip.state_dict()
    text = {k.removeprefix("cond_stage_model.transformer."): v for k, v in sd.items() if k.startswith("cond_stage_model.")}
    text = {(k if k in own else k.removeprefix("text_model.")): v for k, v in text.items()}
    clip.load_state_dict(text, strict=False)
    assert all(torch.equal(clip.state_dict()[k], v) for k, v in text.items())
    unet.save_pretrained(root / "unet")
    vae.save_pretrained(root / "vae")
    clip.save_pretrained(root / "text_encoder")
    (root / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers") / "pipe"
    write_diffusers_folder(root, tiny_state_dict())
    return root


def test_diffusers_folder_converts_back_to_the_original_layout(diffusers_folder):
    original = tiny_state_dict()
    converted, metadata = read_state_dict(diffusers_folder)
    assert sorted(converted) == sorted(original)
    for key, value in original.items():  # fp16 -> fp32 -> our mapping: bit-exact
        assert torch.equal(converted[key].reshape(value.shape), value.float()), key
    assert metadata["nodeflow.unet.num_heads"] == "8" and float(metadata["nodeflow.vae.scaling_factor"]) == 0.18215


def test_diffusers_folder_loads_equal_to_single_file(diffusers_folder, single):
    folder = load_checkpoint(diffusers_folder)
    assert folder.kind == "sd1"
    torch.manual_seed(0)
    x, t, context = torch.randn(1, 4, 8, 8), torch.tensor([500.0]), torch.randn(1, 77, 32)
    for a, b in zip(folder.model.unet.state_dict().values(), single.model.unet.state_dict().values()):
        assert torch.equal(a, b)  # same weights; outputs may differ in the last bit (memory layouts)
    close = dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(folder.model.unet(x, t, context), single.model.unet(x, t, context), **close)
    torch.testing.assert_close(folder.clip.encode("a red circle")[0], single.clip.encode("a red circle")[0], **close)
    z = torch.randn(1, 4, 4, 4)
    torch.testing.assert_close(folder.vae.decode(z), single.vae.decode(z), **close)


def test_diffusers_folder_with_unknown_keys_is_refused(tmp_path):
    from nodeflow.loading.diffusers_keys import unet_to_original

    with pytest.raises(ModelFileError, match="U-Net keys nodeflow cannot map.*encoder_hid_proj.weight"):
        unet_to_original({"down_blocks.0.resnets.0.conv1.weight": torch.zeros(1),
                          "encoder_hid_proj.weight": torch.zeros(1)})  # add_embedding maps now (SDXL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="empty: a folder, but not a diffusers model folder"):
        read_state_dict(tmp_path / "empty")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_dtype_rule(checkpoint_path):
    checkpoint = load_checkpoint(checkpoint_path, device="cuda", dtype="auto")
    assert checkpoint.model.unet.input_blocks[0][0].weight.dtype == torch.float16
    expected_vae = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert next(checkpoint.vae.model.parameters()).dtype == expected_vae
    assert next(checkpoint.clip.model.parameters()).dtype == torch.float16
    image = checkpoint.vae.decode(torch.randn(1, 4, 8, 8))
    assert image.device.type == "cpu" and torch.isfinite(image).all()
    latent = checkpoint.vae.encode(image)
    assert latent.dtype == torch.float32 and torch.isfinite(latent).all()
    forced = load_checkpoint(checkpoint_path, device="cuda", dtype="fp32")
    assert next(forced.vae.model.parameters()).dtype == torch.float32


def test_diffusers_vae_file_and_folder_load_like_the_original(diffusers_folder, tmp_path):
    vae_sd = {k.removeprefix("first_stage_model."): v for k, v in tiny_state_dict().items()
              if k.startswith("first_stage_model.")}
    save_file(vae_sd, str(tmp_path / "original.safetensors"))
    original = load_vae(tmp_path / "original.safetensors")
    z = torch.randn(1, 4, 3, 2)
    for source in (diffusers_folder / "vae" / "diffusion_pytorch_model.safetensors", diffusers_folder / "vae"):
        vae = load_vae(source)
        assert all(torch.equal(a, b) for a, b in zip(vae.model.state_dict().values(), original.model.state_dict().values()))
        torch.testing.assert_close(vae.decode(z), original.decode(z), rtol=1e-6, atol=1e-6)
    assert load_vae(diffusers_folder / "vae").scaling_factor == 0.18215


@pytest.mark.parametrize("levels, blocks, depth", [
    ((1, 2, 4, 4), 2, (1, 1, 1, 0)),  # SD1.5's layout (channels scaled down): upsamplers after attention
    ((1, 2), 1, (0, 1)),
    ((1, 2, 2), 3, (1, 0, 1)),
])
def test_unet_key_mapping_inverts_diffusers_conversion(levels, blocks, depth):
    diffusers = pytest.importorskip("diffusers")
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from nodeflow.loading.diffusers_keys import unet_to_original
    from nodeflow.models.unet import UNetConfig, UNetModel

    config = UNetConfig(in_channels=4, out_channels=4, model_channels=32, channel_mult=levels, num_res_blocks=blocks,
                        transformer_depth=depth, middle_transformer_depth=1, context_dim=32, num_heads=8)
    with torch.device("meta"):
        original = UNetModel(config).state_dict()
    original = {k: torch.arange(v.numel(), dtype=torch.float32).reshape(v.shape) + i for i, (k, v) in enumerate(original.items())}
    reference = diffusers.UNet2DConditionModel(
        sample_size=8, down_block_types=["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depth],
        up_block_types=["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depth)],
        block_out_channels=[32 * m for m in levels], layers_per_block=blocks, cross_attention_dim=32, attention_head_dim=8)
    converted = convert_ldm_unet_checkpoint({"model.diffusion_model." + k: v for k, v in original.items()}, reference.config)
    assert sorted(converted) == sorted(reference.state_dict())  # a valid diffusers state dict
    back = unet_to_original(converted)
    assert sorted(back) == sorted(original)
    assert all(torch.equal(back[k], v) for k, v in original.items())


def test_vae_key_mapping_inverts_diffusers_conversion():
    diffusers = pytest.importorskip("diffusers")
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from nodeflow.loading.diffusers_keys import vae_to_original
    from nodeflow.models.vae import AutoencoderKL, VAEConfig

    with torch.device("meta"):
        shapes = AutoencoderKL(VAEConfig(ch=32, ch_mult=(1, 2, 4, 4), num_res_blocks=2)).state_dict()
    original = {k: torch.randn(v.shape) for k, v in shapes.items()}
    reference = diffusers.AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                                       block_out_channels=[32, 64, 128, 128], layers_per_block=2, latent_channels=4)
    converted = convert_ldm_vae_checkpoint(original, reference.config)
    assert sorted(converted) == sorted(reference.state_dict())
    back = vae_to_original(converted)
    assert sorted(back) == sorted(original)
    assert all(torch.equal(back[k], v) for k, v in original.items())


def test_a_diffusers_folder_runs_from_the_checkpoint_loader_by_its_name(tmp_path):
    from nodeflow.engine.executor import Executor
    from nodeflow.runtime.paths import Paths
    from nodeflow.engine.registry import Registry
    from nodeflow.formats import load_workflow
    from tests.project import ROOT

    write_diffusers_folder(tmp_path / "models" / "checkpoints" / "my-diffusers-model", tiny_state_dict())
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                  assets_dir=tmp_path / "no-assets")
    registry = Registry.load(paths)
    assert paths.list_models("checkpoints") == ["my-diffusers-model"]
    workflow = load_workflow(ROOT / "workflows" / "txt2img.json", registry)
    workflow.nodes["4"].inputs["ckpt_name"] = "my-diffusers-model"
    workflow.nodes["3"].inputs["steps"] = 2
    result = Executor(registry, paths).run(workflow)
    assert result.outputs["9"][0]["images"][0].endswith(".png")


def test_a_vae_never_runs_in_float16(caplog):
    """SD's and SDXL's VAE overflow in fp16 (black or NaN images): --dtype fp16 runs the U-Net and
    the text encoder in fp16 and the VAE in bf16 (CUDA with bf16) or fp32, and the log says so."""
    import logging

    from nodeflow.runtime.devices import model_dtype

    with caplog.at_level(logging.INFO, logger="nodeflow.runtime.devices"):
        assert model_dtype("cpu", "fp16", "vae") == torch.float32
    assert "VAE runs in float32, not float16" in caplog.text
    assert model_dtype("cpu", "fp16", "unet") == model_dtype("cpu", "fp16", "text") == torch.float16
    assert model_dtype("cpu", "bf16", "vae") == torch.bfloat16 and model_dtype("cpu", "auto", "vae") == torch.float32
