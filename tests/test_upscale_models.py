"""Upscale models through spandrel (UpscaleModelLoader, ImageUpscaleWithModel).

Small random-weight models are built with spandrel's own classes of the original networks (the
ESRGAN/Real-ESRGAN RRDBNet, Real-ESRGAN's SRVGGNetCompact, SwinIR) and saved as their releases
store them: ESRGAN's old ``model.N`` keys; BasicSR's (Real-ESRGAN's) new keys under ``params_ema``
(the renaming table is written here, from BasicSR's RRDBNet names); SwinIR under ``params`` with a
``module.`` prefix (a DataParallel save); Compact as .safetensors. Each must be detected (architecture,
scale) and upscale exactly as the network called directly on the whole image.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.errors import ModelFileError, NodeError
from nodeflow.formats.comfy import from_comfy_api
from nodeflow.image.tiled_upscale import tile_count, tile_starts, upscale_tiled
from nodeflow.loading.upscale_model import NEEDS_TORCHVISION, import_spandrel, load_upscale_model
from nodeflow.runtime.paths import Paths
from tests.factories import write_tiny_checkpoint
from tests.project import ROOT

pytestmark = pytest.mark.skipif(importlib.util.find_spec("spandrel") is None,
                                reason="spandrel is not installed (bash .ci/setup installs it)")
NO_TORCHVISION = importlib.util.find_spec("torchvision") is None
EMBEDDED = ROOT / "assets" / "nodeflow-tiny.safetensors"
CHECKPOINT_NAME = "v1-5-pruned-emaonly.safetensors"  # the name ComfyUI's SD1.5 examples load


# ----- model files in their original layouts ---------------------------------------------------

def _random(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return module.eval()


def esrgan(scale: int = 4, shuffle: int | None = None, seed: int = 0) -> torch.nn.Module:
    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    in_nc = 3 * (shuffle or 1) ** 2
    return _random(ESRGAN(in_nc=in_nc, out_nc=3, num_filters=8, num_blocks=1, scale=scale * (shuffle or 1),
                          shuffle_factor=shuffle), seed)


def compact(seed: int = 1) -> torch.nn.Module:
    import_spandrel()
    from spandrel.architectures.Compact import Compact

    return _random(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4), seed)


def swinir(seed: int = 2) -> torch.nn.Module:
    import_spandrel()
    from spandrel.architectures.SwinIR import SwinIR

    return _random(SwinIR(img_size=16, in_chans=3, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
                          mlp_ratio=2.0, upscale=4, upsampler="nearest+conv", resi_connection="1conv"), seed)


def basicsr_keys(old: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ESRGAN's old ``model.N`` keys -> BasicSR's RRDBNet names (Real-ESRGAN's releases): conv_first,
    body.i.rdbK.convJ, conv_body, conv_up1, conv_up2, conv_hr, conv_last."""
    blocks = 1 + max(int(m.group(1)) for k in old if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k)))
    last = max(int(k.split(".")[1]) for k in old)
    names = {"0": "conv_first", "3": "conv_up1", "6": "conv_up2", str(last - 2): "conv_hr", str(last): "conv_last"}
    new = {}
    for key, value in old.items():
        if m := re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(\w+)$", key):
            new[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
        elif m := re.match(rf"model\.1\.sub\.{blocks}\.(\w+)$", key):
            new[f"conv_body.{m[1]}"] = value
        else:
            layer, kind = key.split(".")[1:]
            new[f"{names[layer]}.{kind}"] = value
    return new


def _write(kind: str, path: Path) -> torch.nn.Module:
    """Write the ``kind`` model file at ``path``; return the network it holds."""
    if kind == "esrgan-old":  # ESRGAN's original release layout
        model = esrgan()
        torch.save(model.state_dict(), path)
    elif kind == "realesrgan-new":  # Real-ESRGAN's RealESRGAN_x4plus.pth: BasicSR names under params_ema
        model = esrgan(seed=3)
        torch.save({"params_ema": basicsr_keys(model.state_dict())}, path)
    elif kind == "realesrgan-x2":  # RealESRGAN_x2plus: pixel-unshuffle then 4x (12 input channels)
        model = esrgan(scale=2, shuffle=2, seed=4)
        save_file({k: v.contiguous() for k, v in basicsr_keys(model.state_dict()).items()}, path)
    elif kind == "compact":  # realesr-general-x4v3 (SRVGGNetCompact)
        model = compact()
        save_file(model.state_dict(), path)
    elif kind == "swinir":  # SwinIR, saved from DataParallel under "params"
        model = swinir()
        torch.save({"params": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    else:
        raise ValueError(kind)
    return model


FILES = {  # kind: (file name, spandrel architecture name, scale)
    "esrgan-old": ("RRDB_ESRGAN_x4.pth", "ESRGAN", 4),
    "realesrgan-new": ("RealESRGAN_x4plus.pth", "ESRGAN", 4),
    "realesrgan-x2": ("RealESRGAN_x2plus.safetensors", "ESRGAN", 2),
    "compact": ("realesr-general-x4v3.safetensors", "RealESRGAN Compact", 4),
    "swinir": ("003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth", "SwinIR", 4),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    folder = tmp_path_factory.mktemp("models") / "upscale_models"
    folder.mkdir()
    return {kind: (folder / name, _write(kind, folder / name)) for kind, (name, _, _) in FILES.items()}


def image(height: int, width: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """IMAGE (B, H, W, 3): smooth shapes plus a little noise, like a decoded picture."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, height // 8 + 1, width // 8 + 1, generator=generator)
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    noise = torch.rand(batch, 3, height, width, generator=generator) * 0.1
    return (smooth * 0.9 + noise).clamp(0, 1).movedim(1, -1).contiguous()


def direct(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The network called on the whole image at once: IMAGE in, IMAGE out."""
    with torch.no_grad():
        return model(pixels.movedim(-1, 1)).clamp(0, 1).movedim(1, -1)


# ----- loading ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", FILES)
def test_the_architecture_and_scale_are_detected_and_the_output_is_the_networks(models, kind):
    path, network = models[kind]
    _, architecture, scale = FILES[kind]
    loaded = load_upscale_model(path)
    assert (loaded.architecture.name, loaded.scale) == (architecture, scale)
    pixels = image(24, 32, seed=5)
    upscaled = upscale_tiled(pixels, loaded, loaded.scale)  # one tile: the image is below 512 px
    assert upscaled.shape == (1, 24 * scale, 32 * scale, 3)
    assert torch.allclose(upscaled, direct(network, pixels), atol=1e-5)


def test_a_size_the_model_cannot_take_is_padded_and_cropped_by_spandrel(models):
    loaded = load_upscale_model(models["realesrgan-x2"][0])  # pixel-unshuffle: multiples of 4
    assert upscale_tiled(image(21, 30), loaded, 2).shape == (1, 42, 60, 3)


def test_a_file_that_is_not_an_upscale_model_is_refused_naming_it(tmp_path):
    not_torch = tmp_path / "notes.pth"
    not_torch.write_text("not a model")
    other = tmp_path / "other.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(2, 2)}, other)
    for path, words in ((not_torch, "not a readable PyTorch file"),
                        (other, "not an upscale model of an architecture spandrel knows")):
        with pytest.raises(ModelFileError) as error:
            load_upscale_model(path)
        assert str(path) in str(error.value) and words in str(error.value) and "\n" not in str(error.value)


def test_a_damaged_model_of_a_known_architecture_says_which_and_what_is_wrong(tmp_path):
    path = tmp_path / "4x_cut.pth"
    tensors = esrgan().state_dict()
    del tensors["model.1.sub.0.RDB2.conv3.0.weight"]
    torch.save(tensors, path)
    with pytest.raises(ModelFileError) as error:
        load_upscale_model(path)
    message = str(error.value)
    assert message.startswith(f"{path}: detected as ESRGAN, but its tensors do not fit that architecture")
    assert "model.1.sub.0.RDB2.conv3.0.weight" in message and "\n" not in message


def test_a_stable_diffusion_checkpoint_is_named_as_such(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "v1-5.safetensors")
    with pytest.raises(ModelFileError, match=r"v1-5\.safetensors: not an upscale model: this looks like a sd1 file"):
        load_upscale_model(path)


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": {"model.0.weight": Payload()}}, path)
    with pytest.raises(ModelFileError, match="needs arbitrary Python code"):
        load_upscale_model(path)
    assert not (tmp_path / "PWNED").exists()


# ----- spandrel without torchvision --------------------------------------------------------------

def spandrel_modules_using_torchvision() -> set[str]:
    """The architecture folders of the installed spandrel whose source mentions torchvision."""
    root = Path(importlib.util.find_spec("spandrel").origin).parent / "architectures"
    return {path.relative_to(root).parts[0] for path in root.rglob("*.py") if "torchvision" in path.read_text()}


def test_the_list_of_architectures_needing_torchvision_is_spandrels():
    assert spandrel_modules_using_torchvision() == set(NEEDS_TORCHVISION)


@pytest.mark.skipif(not NO_TORCHVISION, reason="torchvision is installed: spandrel imports the real one")
def test_spandrel_imports_without_torchvision_and_leaves_no_stand_in():
    spandrel = import_spandrel()
    assert "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None
    assert len(spandrel.MAIN_REGISTRY) > 30  # every architecture registered
    lama = sys.modules["spandrel.architectures.LaMa.__arch.LaMa"]
    with pytest.raises(ModelFileError, match="needs torchvision.transforms.functional.rotate"):
        lama.rotate(torch.zeros(1, 3, 4, 4), 0.0)


@pytest.mark.skipif(not NO_TORCHVISION, reason="torchvision is installed")
def test_an_architecture_needing_torchvision_is_refused_on_loading(tmp_path):
    path = tmp_path / "RestoreFormer.safetensors"  # the keys spandrel detects RestoreFormer by
    keys = ("quantize.embedding.weight", "encoder.conv_in.weight", "quant_conv.weight",
            "encoder.down.0.block.0.norm1.weight", "encoder.conv_out.weight", "decoder.conv_out.weight")
    save_file({key: torch.zeros(1) for key in keys}, path)
    with pytest.raises(ModelFileError, match=r"RestoreFormer.safetensors: a RestoreFormer model, which needs "
                                             r"torchvision \(torchvision.transforms.functional.normalize\)"):
        load_upscale_model(path)


# ----- tiling ----------------------------------------------------------------------------------

def test_tiles_cover_the_axis_with_comfyuis_count():
    assert tile_starts(2048, 512, 32) == [0, 480, 960, 1440, 1536]  # ComfyUI: 5 tiles too
    assert tile_starts(500, 512, 32) == [0]
    for size in range(100, 1400, 37):
        starts = tile_starts(size, 256, 32)
        comfy = len(range(0, size - 32, 256 - 32)) if size > 256 else 1
        assert len(starts) == comfy and starts[-1] + min(256, size) == size
        assert all(b - a <= 256 - 32 for a, b in zip(starts, starts[1:]))  # neighbours overlap >= 32


def test_tiled_blending_is_exact_for_a_model_without_context():
    """A per-pixel model gives the same tile values everywhere: the blend must be a weighted mean
    whose weights sum to 1 at every output pixel."""
    pixels = image(150, 190, seed=1, batch=2)
    model = lambda t: F.interpolate(t, scale_factor=3, mode="nearest") ** 2  # noqa: E731
    tiled = upscale_tiled(pixels, model, 3, tile=64, overlap=16)
    assert torch.allclose(tiled, direct(model, pixels), atol=1e-6)


def test_tiles_change_a_convolutional_model_only_by_tiny_seams(models):
    """ESRGAN over 64 px tiles with ComfyUI's 32 px overlap, against the whole image at once:
    the tile borders see less context; the blend keeps the difference small."""
    path, network = models["realesrgan-new"]
    loaded = load_upscale_model(path)
    pixels = image(150, 120, seed=2)
    tiled = upscale_tiled(pixels, loaded, 4, tile=64, overlap=32)
    difference = (tiled - direct(network, pixels)).abs()
    # measured: max 0.0061 (1.6/255), mean 1.0e-4, 0.08% of values more than 1/255 off
    assert difference.max() < 0.01 and difference.mean() < 2e-4, (difference.max(), difference.mean())
    assert (difference > 1 / 255).float().mean() < 0.002


class FailsAboveTile:
    """A model that runs out of memory on tiles larger than ``limit`` pixels per side."""

    def __init__(self, model, limit: int) -> None:
        self.model, self.limit, self.sizes = model, limit, []

    def __call__(self, tile: torch.Tensor) -> torch.Tensor:
        self.sizes.append(max(tile.shape[-2:]))
        if max(tile.shape[-2:]) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(tile)


def test_out_of_memory_halves_the_tile_until_it_fits(models):
    loaded = load_upscale_model(models["compact"][0])
    pixels = image(300, 280, seed=3)
    model, steps = FailsAboveTile(loaded, limit=256), []
    upscaled = upscale_tiled(pixels, model, 4, on_tile=lambda done, total: steps.append((done, total)))
    assert model.sizes[0] == 300 and set(model.sizes[1:]) == {256}  # 512 (the whole image) failed; 256 fits
    assert steps == [(i, tile_count(300, 280, 256, 32)) for i in range(1, 5)]
    assert torch.equal(upscaled, upscale_tiled(pixels, loaded, 4, tile=256))  # the failed pass left nothing behind
    assert (upscaled - direct(models["compact"][1], pixels)).abs().mean() < 2e-4


def test_out_of_memory_below_the_smallest_tile_is_raised(models):
    model = FailsAboveTile(load_upscale_model(models["compact"][0]), limit=100)
    with pytest.raises(torch.OutOfMemoryError):
        upscale_tiled(image(300, 300), model, 4)
    assert sorted(set(model.sizes), reverse=True) == [300, 256, 128]  # ComfyUI's 512, 256, 128


MEMORY_SCRIPT = """
import resource, sys, torch
import torch.nn.functional as F
from nodeflow.image.tiled_upscale import upscale_tiled
size = int(sys.argv[1])
pixels = torch.rand(1, size, size, 3)
upscale_tiled(torch.rand(1, 64, 64, 3), lambda t: F.interpolate(t, scale_factor=4), 4)  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = upscale_tiled(pixels, lambda t: F.interpolate(t, scale_factor=4), 4)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(after - before, out.numel() * 4)
"""


def test_a_large_upscale_holds_the_output_and_one_tile_not_copies_of_it():
    """1024 px at 4x (a 201 MB output, 9 tiles of 50 MB each): the peak grows by the output plus
    one tile's buffers (measured: +67 MB; 2048 px: the 805 MB output, +890 MB in all)."""
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, "1024"], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120, check=True)
    grown, output_bytes = map(int, result.stdout.split())
    assert grown < output_bytes + 100 * 2**20, (grown / 2**20, output_bytes / 2**20)


# ----- the nodes -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paths(tmp_path_factory, models) -> Paths:
    root = tmp_path_factory.mktemp("run")
    checkpoints = root / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    if EMBEDDED.is_file():
        (checkpoints / CHECKPOINT_NAME).symlink_to(EMBEDDED)
    return Paths(models_dirs=(root / "models", next(iter(models.values()))[0].parent.parent),
                 output_dir=root / "out", input_dir=root / "in", temp_dir=root / "tmp")


def test_the_loader_lists_the_files_in_upscale_models(paths):
    registry = Registry.load(paths)
    assert set(paths.list_models("upscale_models")) == {name for name, _, _ in FILES.values()}
    assert {"UpscaleModelLoader", "ImageUpscaleWithModel"} <= set(registry.specs)


def test_automatic1111s_upscaler_folders_are_read_too(tmp_path):
    for folder in ("ESRGAN", "RealESRGAN", "SwinIR"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{folder}_x4.pth").touch()
    paths = Paths(models_dirs=(tmp_path,))
    assert sorted(paths.list_models("upscale_models")) == ["ESRGAN_x4.pth", "RealESRGAN_x4.pth", "SwinIR_x4.pth"]


def esrgan_example(model_name: str, steps: int = 4) -> dict:
    """ComfyUI's SD1.5 ESRGAN example graph (ComfyUI_examples/upscale_models) in API form: txt2img,
    VAE decode, UpscaleModelLoader -> ImageUpscaleWithModel -> SaveImage."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT_NAME}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle on a blue background",
                                                         "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": steps, "cfg": 6.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "13": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
        "14": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_name}},
        "15": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["14", 0], "image": ["8", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["15", 0]}},
    }


@pytest.mark.skipif(not EMBEDDED.is_file(), reason="the embedded model is not in assets/")
def test_comfyuis_esrgan_example_runs_with_files_of_its_names(paths, models):
    import numpy as np
    from PIL import Image

    registry = Registry.load(paths)
    workflow = from_comfy_api(esrgan_example("RealESRGAN_x4plus.pth"), registry)
    shown, progress = {}, []
    result = Executor(registry, paths).run(workflow, on_event=lambda e: (
        shown.__setitem__(e.node_id, e.images) if type(e).__name__ == "ImagesShown" else
        progress.append((e.node_id, e.step, e.total)) if type(e).__name__ == "Progress" else None))
    decoded = shown["13"]
    [saved] = result.outputs["9"][0]["images"]
    pixels = torch.from_numpy(np.asarray(Image.open(saved), dtype=np.float32) / 255)[None]
    expected = direct(models["realesrgan-new"][1], decoded)
    assert pixels.shape == (1, 256, 256, 3)
    assert (pixels - expected).abs().max() <= 1 / 255 + 1e-6  # the PNG's 8-bit rounding
    assert ("15", 1, 1) in progress


def upscale_graph(model_name: str, width: int = 64, height: int = 64) -> dict:
    return {"1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_name}},
            "2": {"class_type": "EmptyImage",
                  "inputs": {"width": width, "height": height, "batch_size": 1, "color": 0}},
            "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["1", 0], "image": ["2", 0]}},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}


def test_the_node_reports_one_progress_step_per_tile(paths):
    registry = Registry.load(paths)
    workflow = from_comfy_api(upscale_graph("realesr-general-x4v3.safetensors", 600, 520), registry)
    steps = []
    Executor(registry, paths).run(workflow, on_event=lambda e: steps.append(
        (e.step, e.total)) if type(e).__name__ == "Progress" and e.node_id == "3" else None)
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]  # 2 x 2 tiles of 512 px


def test_a_bad_file_is_a_users_error_naming_the_node_and_the_file(tmp_path):
    folder = tmp_path / "models" / "upscale_models"
    folder.mkdir(parents=True)
    (folder / "broken.pth").write_bytes(b"PK\x03\x04 cut short")
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "tmp")
    registry = Registry.load(paths)
    with pytest.raises(NodeError) as error:
        Executor(registry, paths).run(from_comfy_api(upscale_graph("broken.pth"), registry))
    message = str(error.value)
    assert not error.value.is_bug and message.startswith("node 1 (UpscaleModelLoader): ") and "broken.pth" in message


def test_the_declarations_are_compared_with_comfyuis():
    table = json.loads((ROOT / "tests" / "data" / "comfy" / "core_nodes.json").read_text())
    from tests.test_comfy_declarations import SHARED, node_problems

    for node in ("UpscaleModelLoader", "ImageUpscaleWithModel"):
        assert node in table and node in SHARED and node_problems(node) == []


# ----- SD2's x4 upscaler (SD_4XUpscale_Conditioning's model): refused by name --------------------

def x4_upscaler_tensors() -> dict[str, torch.Tensor]:
    """The keys and shapes that tell SD2's x4 upscaler apart (scaled down): a U-Net whose first
    convolution takes 7 channels (4 latent + 3 image) and a 1000-class noise-level embedding,
    SD2's 1024-wide cross-attention and OpenCLIP text encoder."""
    unet = "model.diffusion_model."
    return {unet + "input_blocks.0.0.weight": torch.zeros(8, 7, 3, 3), unet + "input_blocks.0.0.bias": torch.zeros(8),
            unet + "label_emb.weight": torch.zeros(1000, 32),
            unet + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(8, 1024),
            "cond_stage_model.model.ln_final.weight": torch.zeros(1024),
            "first_stage_model.decoder.conv_out.weight": torch.zeros(3, 8, 3, 3)}


def test_sd2s_x4_upscaler_is_refused_by_name_wherever_it_is_loaded(tmp_path):
    from nodeflow.loading.checkpoint import load_checkpoint
    from nodeflow.loading.detect import detect_kind

    path = tmp_path / "x4-upscaler-ema.safetensors"
    save_file(x4_upscaler_tensors(), path)
    assert detect_kind(x4_upscaler_tensors()) == "sd2-x4-upscaler"
    with pytest.raises(ModelFileError) as error:
        load_checkpoint(path)
    assert str(error.value) == (f"{path}: this is SD2's x4 upscaler (stable-diffusion-x4-upscaler), a model family "
                                "nodeflow does not run (nodeflow runs SD1.x, SD2.x and SDXL)")
    with pytest.raises(ModelFileError, match="not an upscale model: this looks like a sd2-x4-upscaler file"):
        load_upscale_model(path)
