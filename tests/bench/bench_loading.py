"""Loading a full-size SD1.5 or SDXL single-file checkpoint (random weights, fp16 file): wall time
and peak RSS over the file size. Goal: peak RSS under 1.3x the weights.

    python tests/bench/bench_loading.py [--family sd15|sdxl] [--dtype fp16|fp32] [--keep PATH]

The checkpoint is written once (SD1.5 about 2.1 GB, SDXL about 6.9 GB: U-Net 320 x (1, 2, 4) with
transformer depths (0, 2, 10), CLIP-L and OpenCLIP bigG in their original layouts) to a temporary
folder, or to --keep's path and reused. Loading runs in a fresh process so its peak RSS (``VmHWM``, Linux) is its own; the baseline
(Python, torch and nodeflow imported) is subtracted and printed. An fp16 load at the file's
dtype memory-maps the file (pages read on use) and copies nothing; an fp32 load of an fp16 file
reads and converts one tensor at a time (nodeflow.loading.files.read_safetensors_converted), so the
peak is the fp32 weights plus one tensor.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.family_files (the SDXL layout helpers)

CHILD = r"""
import json, sys, time
import torch


def status(field):  # from /proc/self/status, in bytes
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024


def high_water_mark():  # VmHWM: peak RSS of this process image (ru_maxrss survives exec)
    return status("VmHWM")
from nodeflow.loading.checkpoint import load_checkpoint
import nodeflow.text.text_encoder, nodeflow.models.unet, nodeflow.models.vae  # imports before the baseline
base = high_water_mark()
start = time.perf_counter()
checkpoint = load_checkpoint(sys.argv[1], device="cpu", dtype=sys.argv[2])
seconds = time.perf_counter() - start
peak = high_water_mark()
modules = [checkpoint.model.unet, checkpoint.vae.model, checkpoint.clip.model]
weights = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
print(json.dumps({"seconds": seconds, "baseline": base, "peak": peak, "weights": weights,
                  "anon": status("RssAnon"), "file": status("RssFile")}))
"""


def write_sd15_checkpoint(path: Path) -> None:
    """SD1.5's architecture (U-Net 320 x (1, 2, 4, 4), VAE 128, CLIP ViT-L/14 text), random, fp16."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from nodeflow.models.unet import UNetConfig, UNetModel
    from nodeflow.models.vae import AutoencoderKL, VAEConfig

    sd: dict[str, torch.Tensor] = {}
    unet = UNetModel(UNetConfig(in_channels=4, out_channels=4, model_channels=320, channel_mult=(1, 2, 4, 4),
                                num_res_blocks=2, transformer_depth=(1, 1, 1, 0), middle_transformer_depth=1,
                                context_dim=768, num_heads=8))
    sd.update({"model.diffusion_model." + k: v.half() for k, v in unet.state_dict().items()})
    del unet
    vae = AutoencoderKL(VAEConfig(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2))
    sd.update({"first_stage_model." + k: v.half() for k, v in vae.state_dict().items()})
    del vae
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu"))
    for key, value in clip.state_dict().items():
        if not key.endswith("position_ids"):
            key = key if key.startswith("text_model.") else "text_model." + key
            sd["cond_stage_model.transformer." + key] = value.half()
    del clip
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


def write_sdxl_checkpoint(path: Path) -> None:
    """SDXL base's architecture and key layout, every tensor filled with uniform noise in fp16
    straight away (the models are built on the meta device: shapes only, no 10 GB fp32 detour)."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from nodeflow.models.unet import UNetConfig, UNetModel
    from nodeflow.models.vae import AutoencoderKL, VAEConfig
    from tests.family_files import VIT_BIGG, VIT_L, clip_config, open_clip_layout, prefixed, transformers_layout

    with torch.device("meta"):
        unet = UNetModel(UNetConfig(model_channels=320, channel_mult=(1, 2, 4), transformer_depth=(0, 2, 10),
                                    middle_transformer_depth=10, context_dim=2048, num_heads=None, head_channels=64,
                                    use_linear_in_transformer=True, adm_in_channels=2816))
        shapes = prefixed("model.diffusion_model.", unet.state_dict())
        shapes |= prefixed("first_stage_model.", AutoencoderKL(VAEConfig()).state_dict())
        shapes |= prefixed("conditioner.embedders.0.transformer.",
                           transformers_layout(CLIPTextModel(clip_config(VIT_L))))
        shapes |= prefixed("conditioner.embedders.1.model.",
                           open_clip_layout(CLIPTextModelWithProjection(clip_config(VIT_BIGG))))
    generator = torch.Generator().manual_seed(0)
    sd = {}
    for key, meta in shapes.items():
        if meta.dtype == torch.int64:  # position ids
            sd[key] = torch.arange(meta.shape[-1]).expand(meta.shape).contiguous()
        else:
            sd[key] = torch.empty(meta.shape, dtype=torch.float16).uniform_(-0.02, 0.02, generator=generator)
    save_file(sd, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="sd15", choices=["sd15", "sdxl"])
    parser.add_argument("--dtype", default="fp16", choices=["fp16", "fp32", "auto"])
    parser.add_argument("--keep", type=Path, help="write/reuse the checkpoint here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.keep or Path(folder) / f"{args.family}-random.safetensors"
        if not path.exists():
            (write_sdxl_checkpoint if args.family == "sdxl" else write_sd15_checkpoint)(path)
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), args.dtype], check=True,
                             capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        size = path.stat().st_size
        used = result["peak"] - result["baseline"]
        print(f"file {size / 2**30:.2f} GiB, weights loaded ({args.dtype}) {result['weights'] / 2**30:.2f} GiB")
        print(f"load time {result['seconds']:.1f} s; peak RSS {result['peak'] / 2**30:.2f} GiB "
              f"(baseline {result['baseline'] / 2**30:.2f} GiB)")
        print(f"after loading: RssAnon {result['anon'] / 2**30:.2f} GiB, RssFile {result['file'] / 2**30:.2f} GiB "
              "(file pages are the safetensors mmap: page cache, reclaimable)")
        print(f"peak RSS above baseline / weights = {used / result['weights']:.2f}; / file = {used / size:.2f}")


if __name__ == "__main__":
    main()
