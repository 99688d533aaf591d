"""Forward-pass times of our U-Net and VAE against diffusers', and of our CLIP text tower
against transformers' CLIPTextModel, in the same process (fp32).

Both models hold the SAME tensors (ours built with torch's default init, diffusers' built on the
meta device and filled through its own single-file converter with ``assign=True``), so the
comparison is of the code, not the weights. Runs alternate (ours, theirs, ours, ...) and the
median of each is reported; ratio = ours / diffusers (goal: <= 1.0).

    python tests/bench/bench_models.py                 # SD1.5 configs at small sizes (minutes)
    python tests/bench/bench_models.py --full          # the README figures: U-Net batch 2 at a
                                                       # 64x64 latent, VAE decode of 512x512
    python tests/bench/bench_models.py --tiny          # a scaled-down config (seconds)
    python tests/bench/bench_models.py --bf16          # ours in bf16 against ours in fp32
    python tests/bench/bench_models.py --sdxl          # SDXL's U-Net, batch 2 (cond + uncond) at
                                                       # 512x512: seconds per sampling step
    options: --repeats N, --threads N, --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from nodeflow.models.unet import UNetConfig, UNetModel
from nodeflow.models.vae import AutoencoderKL, VAEConfig

TINY_UNET = UNetConfig(model_channels=64, channel_mult=(1, 2, 4), transformer_depth=(1, 1, 0),
                       context_dim=64)
TINY_VAE = VAEConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)
VIT_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
SDXL_UNET = UNetConfig(model_channels=320, channel_mult=(1, 2, 4), transformer_depth=(0, 2, 10),
                       middle_transformer_depth=10, context_dim=2048, num_heads=None, head_channels=64,
                       use_linear_in_transformer=True, adm_in_channels=2816)


def diffusers_unet(config: UNetConfig, ours: UNetModel) -> torch.nn.Module:
    import diffusers
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    with torch.device("meta"):
        model = diffusers.UNet2DConditionModel(
            in_channels=config.in_channels, out_channels=config.out_channels,
            down_block_types=["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in config.transformer_depth],
            up_block_types=["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(config.transformer_depth)],
            block_out_channels=[config.model_channels * m for m in config.channel_mult],
            layers_per_block=config.num_res_blocks, cross_attention_dim=config.context_dim,
            attention_head_dim=config.num_heads or [config.model_channels * m // config.head_channels
                                                    for m in config.channel_mult],
            use_linear_projection=config.use_linear_in_transformer, **_sdxl_options(config))
    sd = {"model.diffusion_model." + k: v for k, v in ours.state_dict().items()}
    model.load_state_dict(convert_ldm_unet_checkpoint(sd, model.config), strict=True, assign=True)
    return model.eval()


def _sdxl_options(config: UNetConfig) -> dict:
    """diffusers' settings for SDXL's U-Net (per-level transformer depth, the text_time embedding)."""
    if not config.adm_in_channels:
        return {}
    return dict(transformer_layers_per_block=list(config.transformer_depth), addition_embed_type="text_time",
                addition_time_embed_dim=256, projection_class_embeddings_input_dim=config.adm_in_channels)


def diffusers_vae(config: VAEConfig, ours: AutoencoderKL) -> torch.nn.Module:
    import diffusers
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    with torch.device("meta"):
        model = diffusers.AutoencoderKL(
            down_block_types=["DownEncoderBlock2D"] * len(config.ch_mult),
            up_block_types=["UpDecoderBlock2D"] * len(config.ch_mult),
            block_out_channels=[config.ch * m for m in config.ch_mult],
            layers_per_block=config.num_res_blocks, latent_channels=config.embed_dim)
    model.load_state_dict(convert_ldm_vae_checkpoint(ours.state_dict(), model.config), strict=True, assign=True)
    return model.eval()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(label: str, ours: Callable[[], object], theirs: Callable[[], object], repeats: int,
            device: torch.device) -> None:
    ours(), theirs()  # warm-up (allocator, kernels)
    times: dict[str, list[float]] = {"ours": [], "diffusers": []}
    for _ in range(repeats):
        times["ours"].append(timed(ours, device))
        times["diffusers"].append(timed(theirs, device))
    a, b = statistics.median(times["ours"]), statistics.median(times["diffusers"])
    print(f"{label:<44} ours {a * 1000:9.1f} ms   diffusers {b * 1000:9.1f} ms   ratio {a / b:5.2f}",
          flush=True)


def bench_unet(config: UNetConfig, name: str, shapes: list[tuple[int, int]], repeats: int,
               device: torch.device) -> None:
    torch.manual_seed(0)
    ours = UNetModel(config).eval().to(device)
    theirs = diffusers_unet(config, ours)
    for batch, size in shapes:
        x = torch.randn(batch, config.in_channels, size, size, device=device)
        t = torch.full((batch,), 500.0, device=device)
        context = torch.randn(batch, 77, config.context_dim, device=device)
        ours_kwargs, theirs_kwargs = {}, {}
        if config.adm_in_channels:  # SDXL: ours takes the ADM vector, diffusers builds it from its parts
            ours_kwargs["y"] = torch.randn(batch, config.adm_in_channels, device=device)
            theirs_kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, config.adm_in_channels - 6 * 256, device=device),
                                                  "time_ids": torch.tensor([[size * 8] * 2 + [0, 0] + [size * 8] * 2]
                                                                           * batch, device=device)}
        with torch.inference_mode():
            compare(f"U-Net {name} batch {batch} latent {size}x{size}",
                    lambda: ours(x, t, context, **ours_kwargs),
                    lambda: theirs(x, t, encoder_hidden_states=context, **theirs_kwargs), repeats, device)


def bench_vae(config: VAEConfig, name: str, sizes: list[int], repeats: int, device: torch.device) -> None:
    torch.manual_seed(0)
    ours = AutoencoderKL(config).eval().to(device)
    theirs = diffusers_vae(config, ours)
    for size in sizes:
        z = torch.randn(1, config.embed_dim, size // config.downscale, size // config.downscale, device=device)
        x = torch.rand(1, 3, size, size, device=device) * 2 - 1
        with torch.inference_mode():
            compare(f"VAE {name} decode {size}x{size}", lambda: ours.decode(z),
                    lambda: theirs.decode(z).sample, repeats, device)
            compare(f"VAE {name} encode {size}x{size}", lambda: ours.encode(x),
                    lambda: theirs.encode(x).latent_dist.mean, repeats, device)


def bench_text(sizes: dict, name: str, repeats: int, device: torch.device) -> None:
    """Our CLIP text tower (nodeflow.models.clip_text) against transformers' on the same weights:
    a prompt batch of 2 (cond + uncond) of 77 tokens, all hidden states (clip skip)."""
    import transformers

    from nodeflow.text.text_encoder import clip_model_from_state_dict

    torch.manual_seed(0)
    config = transformers.CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **sizes)
    theirs = transformers.CLIPTextModel(config).eval().to(device)
    state = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in theirs.state_dict().items()}
    ours = clip_model_from_state_dict(state, device=device, num_heads=config.num_attention_heads)
    ids = torch.randint(0, 49406, (2, 77), device=device)
    with torch.inference_mode():
        compare(f"CLIP text {name} batch 2 x 77 tokens", lambda: ours(input_ids=ids, output_hidden_states=True),
                lambda: theirs(input_ids=ids, output_hidden_states=True), repeats, device)


def bench_bf16(repeats: int, device: torch.device) -> None:
    """Our SD1.5 U-Net in bfloat16 against itself in float32 (the speed-up of ``--dtype bf16`` on a
    CPU with AVX512-BF16 or AMX), batch 2 at a 32x32 latent; and how far bf16's output is."""
    torch.manual_seed(0)
    fp32 = UNetModel(UNetConfig()).eval().to(device)
    bf16 = UNetModel(UNetConfig()).eval()
    bf16.load_state_dict(fp32.state_dict())
    bf16 = bf16.to(device, torch.bfloat16)
    x = torch.randn(2, 4, 32, 32, device=device)
    t = torch.full((2,), 500.0, device=device)
    context = torch.randn(2, 77, 768, device=device)
    with torch.inference_mode():
        compare("U-Net SD1.5 batch 2 latent 32x32, bf16 vs fp32 (\"diffusers\" column)",
                lambda: bf16(x.bfloat16(), t, context.bfloat16()), lambda: fp32(x, t, context), repeats, device)
        exact, rounded = fp32(x, t, context), bf16(x.bfloat16(), t, context.bfloat16()).float()
    print(f"bf16 output: max difference {float((exact - rounded).abs().max() / exact.abs().max()):.4f} "
          f"of fp32's largest value", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--full", action="store_true", help="README sizes (U-Net b2 64x64, VAE 512)")
    scale.add_argument("--tiny", action="store_true", help="scaled-down configs, seconds")
    scale.add_argument("--sdxl", action="store_true", help="SDXL's U-Net, batch 2 at 512x512 (64x64 latent)")
    scale.add_argument("--bf16", action="store_true", help="our SD1.5 U-Net in bf16 against fp32 (CPU speed-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, fp32, "
          f"median of {args.repeats}", flush=True)
    if args.tiny:
        bench_unet(TINY_UNET, "tiny", [(1, 16), (2, 32)], args.repeats, device)
        bench_vae(TINY_VAE, "tiny", [128, 256], args.repeats, device)
        bench_text(dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=2),
                   "tiny", args.repeats, device)
    elif args.bf16:
        bench_bf16(args.repeats, device)
    elif args.sdxl:
        bench_unet(SDXL_UNET, "SDXL", [(2, 64)], args.repeats, device)
    elif args.full:
        bench_unet(UNetConfig(), "SD1.5", [(2, 64)], args.repeats, device)
        bench_vae(VAEConfig(), "SD", [512], args.repeats, device)
        bench_text(VIT_L, "ViT-L", args.repeats, device)
    else:
        bench_unet(UNetConfig(), "SD1.5", [(1, 32), (2, 32)], args.repeats, device)
        bench_vae(VAEConfig(), "SD", [128, 256], args.repeats, device)
        bench_text(VIT_L, "ViT-L", args.repeats, device)


if __name__ == "__main__":
    main()
