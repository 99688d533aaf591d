"""Our AutoencoderKL equals diffusers' AutoencoderKL on the same random weights, converted from
the original layout by diffusers' own single-file conversion (convert_ldm_vae_checkpoint)."""

import pytest
import torch

from nodeflow.models.vae import AutoencoderKL, VAEConfig, vae_config_from_state_dict, vae_from_state_dict

diffusers = pytest.importorskip("diffusers")
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint  # noqa: E402

TINY = VAEConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=4, embed_dim=4)



def random_vae(config: VAEConfig, seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    model = AutoencoderKL(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.1 + (parameter == 1) * 1.0)
    return model.eval()


def reference_vae(config: VAEConfig, state_dict: dict, assign: bool = False):
    """diffusers' model holding ``state_dict`` (original layout); with ``assign`` built on the meta
    device and sharing the tensors."""
    with torch.device("meta" if assign else "cpu"):
        model = diffusers.AutoencoderKL(
            in_channels=config.in_channels, out_channels=config.out_channels,
            down_block_types=["DownEncoderBlock2D"] * len(config.ch_mult),
            up_block_types=["UpDecoderBlock2D"] * len(config.ch_mult),
            block_out_channels=[config.ch * m for m in config.ch_mult],
            layers_per_block=config.num_res_blocks, latent_channels=config.embed_dim, norm_num_groups=32)
    converted = convert_ldm_vae_checkpoint(state_dict, model.config)
    model.load_state_dict(converted, strict=True, assign=assign)
    return model.eval()


def relative_error(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_encode_and_decode_match_diffusers():
    ours = random_vae(TINY)
    reference = reference_vae(TINY, ours.state_dict())
    x = torch.rand(2, 3, 64, 48) * 2 - 1
    with torch.no_grad():
        mean, logvar = ours.encode_dist(x)
        posterior = reference.encode(x).latent_dist
        assert mean.shape == (2, 4, 8, 6)
        assert relative_error(mean, posterior.mean) < 1e-4
        assert relative_error(logvar, posterior.logvar) < 1e-4
        z = torch.randn(2, 4, 8, 6)
        assert relative_error(ours.decode(z), reference.decode(z).sample) < 1e-4


def test_linear_attention_weights_are_accepted():
    ours = random_vae(TINY)
    sd = {k: (v[:, :, 0, 0] if "attn_1" in k and k.endswith("weight") and v.ndim == 4 else v)
          for k, v in ours.state_dict().items()}
    loaded = vae_from_state_dict(sd)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.encode(x), ours.encode(x), atol=1e-6)


def test_config_is_inferred_from_shapes():
    assert vae_config_from_state_dict(AutoencoderKL(TINY).state_dict()) == TINY
    sd1 = VAEConfig()
    with torch.device("meta"):
        assert vae_config_from_state_dict(AutoencoderKL(sd1).state_dict()) == sd1


def test_full_sd_vae_layout_converts_with_diffusers():
    """SD1.x's VAE key set and shapes (meta device): diffusers' converter maps every key, strictly."""
    sd_vae = VAEConfig()
    with torch.device("meta"):
        sd = AutoencoderKL(sd_vae).state_dict()
    assert sum(v.numel() for v in sd.values()) == 83_653_863  # SD's AutoencoderKL parameter count
    reference_vae(sd_vae, sd, assign=True)  # raises on any missing/unexpected key or shape


@pytest.mark.slow
def test_full_sd_vae_matches_diffusers():
    torch.manual_seed(0)
    ours = AutoencoderKL(VAEConfig()).eval()
    reference = reference_vae(VAEConfig(), ours.state_dict(), assign=True)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert relative_error(ours.encode(x), reference.encode(x).latent_dist.mean) < 1e-4
        assert relative_error(ours.decode(z), reference.decode(z).sample) < 1e-4
