"""One single-file checkpoint, two readers: ours and diffusers' own single-file conversion.

Our randomly initialised U-Net, VAE and text encoder (transformers' CLIPTextModel, the one SD1.x
uses) are exported by nodeflow's exporter (training/export.checkpoint_state_dict: fp16, keys
``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.text_model.*``)
to ONE .safetensors file. That file is loaded

- by us: nodeflow.loading.checkpoint.load_checkpoint (detection, strict loading, fp32 on the CPU);
- by the reference: diffusers.loaders.single_file_utils reads the same file
  (load_single_file_checkpoint), derives the diffusers configs from the original LDM config
  (create_unet/vae_diffusers_config_from_ldm, as for a ``v1-inference.yaml``), converts the keys
  (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint) into diffusers' UNet2DConditionModel
  and AutoencoderKL, loaded strictly; and builds transformers' CLIPTextModel with
  create_diffusers_clip_model_from_ldm (which converts with convert_ldm_clip_checkpoint).

If our key names differed from the real layout, diffusers' converters would leave weights out and
the strict loads below would fail: that is the point. Both sides then run on the same inputs in
fp32 (the weights are the file's fp16 values, upcast on both sides): U-Net forward, VAE encode
(posterior mean and log-variance) and decode, and CLIP's last hidden state for token ids made by
transformers' CLIPTokenizer (built from our asset files) the way diffusers' pipelines make them.
Relative error (max |a - b| / max |b|) under 1e-4.

Sizes: a scaled-down config for every part (fast), and the full SD1.5 config (slow: U-Net
320 x (1, 2, 4, 4), VAE 128 x (1, 2, 4, 4), ViT-L/14 text tower), so the real key set goes through
the file and both converters.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.loading.checkpoint import load_checkpoint
from nodeflow.models.unet import UNetConfig, UNetModel
from nodeflow.models.vae import AutoencoderKL, VAEConfig
from nodeflow.text.tokenizer import default_tokenizer_dir
from nodeflow.training.export import checkpoint_state_dict

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
from diffusers.loaders import single_file_utils as sfu  # noqa: E402

PROMPT = "a photo of an astronaut riding a horse, (detailed:1.0), café"  # weight 1.0: plain text

TINY_UNET = UNetConfig(in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2, 2),
                       num_res_blocks=2, transformer_depth=(1, 1, 0), middle_transformer_depth=1,
                       context_dim=128, num_heads=8)
TINY_VAE = VAEConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)
# 128 wide: 2 heads of 64 (the loader reads heads as width / 64, as for every CLIP text tower)
TINY_CLIP = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=2)
VIT_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)


def clip_config(sizes: dict):
    return transformers.CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                                       bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **sizes)


def original_config(unet: UNetConfig, vae: VAEConfig) -> dict:
    """The LDM config (what a v1-inference.yaml holds) for our U-Net and VAE configs."""
    depths = {d for d in unet.transformer_depth if d}
    assert len(depths) == 1 and unet.middle_transformer_depth in depths, "LDM configs use one depth"
    return {"model": {"params": {
        "scale_factor": 0.18215,
        "unet_config": {"params": {
            "image_size": 32, "in_channels": unet.in_channels, "out_channels": unet.out_channels,
            "model_channels": unet.model_channels, "channel_mult": list(unet.channel_mult),
            "attention_resolutions": [2 ** level for level, d in enumerate(unet.transformer_depth) if d],
            "num_res_blocks": unet.num_res_blocks, "num_heads": unet.num_heads,
            "use_spatial_transformer": True, "transformer_depth": depths.pop(),
            "context_dim": unet.context_dim, "use_linear_in_transformer": unet.use_linear_in_transformer,
            "legacy": False}},
        "first_stage_config": {"params": {"embed_dim": vae.embed_dim, "ddconfig": {
            "double_z": True, "z_channels": vae.z_channels, "resolution": 256,
            "in_channels": vae.in_channels, "out_ch": vae.out_channels, "ch": vae.ch,
            "ch_mult": list(vae.ch_mult), "num_res_blocks": vae.num_res_blocks, "attn_resolutions": [],
            "dropout": 0.0}}},
        "cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"},
    }}}


def random_models(unet_config: UNetConfig, vae_config: VAEConfig, clip_sizes: dict, seed: int = 0):
    """Our U-Net and VAE and the CLIPTextModel, fp16 (the file's dtype), with random weights.

    Built on the meta device and filled from one pool of uniform noise, each tensor from its own
    offset (a billion fresh random numbers would take most of the full-size test's time): weights
    +-1/sqrt(fan_in) as torch's default init, biases +-0.1, norm scales 1 +- 0.1. Non-zero
    everywhere (our zero-initialised output layers included), distinct between tensors."""
    with torch.device("meta"):
        models = [UNetModel(unet_config), AutoencoderKL(vae_config),
                  transformers.CLIPTextModel(clip_config(clip_sizes))]
    models = [model.to(torch.float16).to_empty(device="cpu").eval() for model in models]
    largest = max(p.numel() for model in models for p in model.parameters())
    generator = torch.Generator().manual_seed(seed)
    pool = torch.rand(largest + 1_000_003, generator=generator).to(torch.float16) * 2 - 1  # U(-1, 1)
    room = pool.numel() - largest
    index = 0
    with torch.no_grad():
        for model in models:
            for module in model.modules():
                norm = isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm))
                for name, parameter in module.named_parameters(recurse=False):
                    index += 1
                    start = index * 7_919_993 % room
                    noise = pool[start:start + parameter.numel()].view_as(parameter)
                    if norm and name == "weight":
                        torch.add(noise, 1.0 / 0.1, out=parameter).mul_(0.1)  # 1 + 0.1 u
                    elif parameter.ndim >= 2:
                        torch.mul(noise, parameter[0].numel() ** -0.5, out=parameter)
                    else:
                        torch.mul(noise, 0.1, out=parameter)
    return models


def write_checkpoint(path, unet_config: UNetConfig, vae_config: VAEConfig, clip_sizes: dict):
    """Our three models with random weights, exported by nodeflow's exporter to ``path``."""
    tensors = checkpoint_state_dict(*random_models(unet_config, vae_config, clip_sizes))
    assert {k.split(".")[0] for k in tensors} == {"model", "first_stage_model", "cond_stage_model"}
    assert all(k.startswith("cond_stage_model.transformer.text_model.") for k in tensors if "cond_stage" in k)
    save_file(tensors, str(path), metadata={"format": "pt"})  # no nodeflow metadata: a plain SD1 file
    return path


@torch.no_grad()
def our_outputs(path, inputs: dict) -> dict:
    ours = load_checkpoint(path)
    assert ours.kind == "sd1" and ours.model.dtype == ours.vae.dtype == ours.clip.dtype == torch.float32
    assert ours.model.latent_format.scale_factor == 0.18215
    mean, logvar = ours.vae.model.encode_dist(inputs["pixels"])
    cond, pooled = ours.clip.encode(PROMPT)  # our tokenizer, windows and weights
    return {"unet": ours.model.unet(inputs["latent"], inputs["t"], inputs["context"]),
            "decode": ours.vae.model.decode(inputs["latent"]), "mean": mean, "logvar": logvar,
            "hidden": cond, "pooled": pooled}


@torch.no_grad()
def reference_outputs(path, unet_config: UNetConfig, vae_config: VAEConfig, clip_sizes: dict, folder,
                      inputs: dict) -> dict:
    """diffusers' UNet2DConditionModel, AutoencoderKL and transformers' CLIPTextModel from the
    file, through diffusers' single-file utilities only, strictly; run one at a time (memory)."""
    checkpoint = sfu.load_single_file_checkpoint(str(path))
    ldm = original_config(unet_config, vae_config)
    outputs = {}

    def build(cls, config, converted, prefix):
        with torch.device("meta"):
            model = cls(**config)
        # fp16 file values, upcast: strict, so a key the converter could not map is an error
        model.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True, assign=True)
        # ... and every tensor of that part of the file was used
        assert sum(v.numel() for k, v in checkpoint.items() if k.startswith(prefix)) == \
            sum(p.numel() for p in model.parameters())
        return model.eval()

    config = sfu.create_unet_diffusers_config_from_ldm(ldm, checkpoint)
    unet = build(diffusers.UNet2DConditionModel, config, sfu.convert_ldm_unet_checkpoint(checkpoint, config),
                 "model.diffusion_model.")
    outputs["unet"] = unet(inputs["latent"], inputs["t"], encoder_hidden_states=inputs["context"]).sample
    del unet

    config = sfu.create_vae_diffusers_config_from_ldm(ldm, checkpoint)
    assert config["scaling_factor"] == 0.18215
    vae = build(diffusers.AutoencoderKL, config, sfu.convert_ldm_vae_checkpoint(checkpoint, config),
                "first_stage_model.")
    outputs["decode"] = vae.decode(inputs["latent"]).sample
    posterior = vae.encode(inputs["pixels"]).latent_dist
    outputs["mean"], outputs["logvar"] = posterior.mean, posterior.logvar
    del vae

    # CLIP: diffusers reads the architecture from a config folder (for a real SD1 file that is
    # openai/clip-vit-large-patch14 on the Hub; here a local folder with the same fields)
    clip_config(clip_sizes).save_pretrained(folder)
    text = sfu.create_diffusers_clip_model_from_ldm(
        transformers.CLIPTextModel, checkpoint, config=str(folder), local_files_only=True,
        torch_dtype=torch.float32).eval()
    # create_diffusers_clip_model_from_ldm loads non-strictly: check the key sets and values
    converted = {k.removeprefix("text_model."): v for k, v in sfu.convert_ldm_clip_checkpoint(checkpoint).items()}
    assert set(converted) == {k.removeprefix("text_model.") for k in text.state_dict()
                              if not k.endswith("position_ids")}
    for key, value in converted.items():
        assert torch.equal(text.get_parameter(key), value.float()), key
    expected = text(input_ids=reference_ids(PROMPT))
    outputs["hidden"], outputs["pooled"] = expected.last_hidden_state, expected.pooler_output
    return outputs


def reference_ids(prompt: str) -> torch.Tensor:
    """Ids as diffusers' StableDiffusionPipeline makes them: transformers' CLIPTokenizer, padded
    to 77 with its pad token (<|endoftext|>, 49407)."""
    folder = default_tokenizer_dir()
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    ids = tokenizer(prompt.replace("(detailed:1.0)", "detailed"), padding="max_length", max_length=77,
                    truncation=True, return_tensors="pt").input_ids
    assert ids[0, -1] == 49407
    return ids


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def compare(tmp_path, unet_config: UNetConfig, vae_config: VAEConfig, clip_sizes: dict, size: int = 8):
    path = write_checkpoint(tmp_path / "model.safetensors", unet_config, vae_config, clip_sizes)
    generator = torch.Generator().manual_seed(1)
    inputs = {"latent": torch.randn(1, 4, size, size, generator=generator),
              "t": torch.tensor([621.0]),
              "context": torch.randn(1, 77, unet_config.context_dim, generator=generator),
              "pixels": torch.rand(1, 3, size * 8, size * 8, generator=generator) * 2 - 1}
    ours = our_outputs(path, inputs)  # our models are released before the reference is built
    reference = reference_outputs(path, unet_config, vae_config, clip_sizes, tmp_path / "clip", inputs)
    assert ours["hidden"].shape == (1, 77, clip_sizes["hidden_size"])
    assert ours["unet"].shape == (1, 4, size, size) and ours["decode"].shape == (1, 3, size * 8, size * 8)
    errors = {name: relative_error(ours[name], reference[name]) for name in reference}
    assert all(error < 1e-4 for error in errors.values()), errors
    return errors


def test_scaled_down_single_file_matches_diffusers(tmp_path):
    compare(tmp_path, TINY_UNET, TINY_VAE, TINY_CLIP)


@pytest.mark.slow
def test_full_sd15_single_file_matches_diffusers(tmp_path):
    """The real SD1.5 configuration: 1.07 billion parameters in a 2.1 GB fp16 file."""
    compare(tmp_path, UNetConfig(), VAEConfig(), VIT_L)
