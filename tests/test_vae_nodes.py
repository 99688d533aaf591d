"""The VAE socket value and the VAE / loader nodes, against results computed independently."""

import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nodeflow.models.vae import AutoencoderKL, VAEConfig
from nodeflow.image.vae import VAE
from nodeflow.engine.registry import Registry
from nodeflow_nodes import loaders
from nodeflow_nodes import vae as vae_nodes


class LocalAutoencoder(torch.nn.Module):
    """A stand-in VAE whose every output pixel depends only on its own 8x8 block: tiling it must
    give exactly the untiled result, whatever the tile and overlap."""

    def __init__(self, fail_above: int | None = None, error=None) -> None:
        super().__init__()
        self.config = SimpleNamespace(downscale=8)
        self.fail_above = fail_above  # simulated out-of-memory above this many pixels per call
        self.error = error or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8 GiB")
        self.calls: list[tuple[int, ...]] = []

    def _check(self, x: torch.Tensor) -> None:
        self.calls.append(tuple(x.shape))
        if self.fail_above and x.shape[-1] * x.shape[-2] > self.fail_above:
            raise self.error

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 4, H/8, W/8)
        self._check(x)
        pooled = F.avg_pool2d(x, 8)
        return torch.cat([pooled, pooled.sum(1, keepdim=True)], 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (B, 4, h, w) -> (B, 3, 8h, 8w)
        self._check(z)
        return F.interpolate(z[:, :3] - z[:, 3:] * 0.5, scale_factor=8, mode="nearest")


def local_vae(**kwargs) -> VAE:
    return VAE(LocalAutoencoder(**kwargs), 0.18215, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def tiny_vae() -> VAE:
    torch.manual_seed(0)
    model = AutoencoderKL(VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1)).eval()
    return VAE(model, 0.18215, torch.device("cpu"), torch.float32)


def test_encode_is_posterior_mean_of_2v_minus_1_and_decode_clamps(tiny_vae):
    image = torch.rand(2, 16, 24, 3)
    expected = tiny_vae.model.encode(image.movedim(-1, 1) * 2 - 1)
    # batch 1 vs batch 2 convolutions differ in float rounding (thread/blocking dependent): 1e-5
    torch.testing.assert_close(tiny_vae.encode(image, batch_size=1), expected, rtol=1e-4, atol=1e-5)
    latent = torch.randn(2, 4, 2, 3) * 3
    y = tiny_vae.model.decode(latent)
    torch.testing.assert_close(tiny_vae.decode(latent), ((y + 1) / 2).clamp(0, 1).movedim(1, -1), rtol=1e-5, atol=1e-6)


def test_sizes_not_multiple_of_8_are_centre_cropped():
    vae = local_vae()
    image = torch.rand(1, 21, 19, 4)  # alpha channel dropped, 21 -> 16 from row 2, 19 -> 16 from column 1
    expected = vae.encode(image[:, 2:18, 1:17, :3].clone())
    assert torch.equal(vae.encode(image), expected)
    assert vae.model.calls[-1] == (1, 3, 16, 16)


@pytest.mark.parametrize("tile, overlap", [(16, 4), (24, 8), (8, 0), (64, 16)])
def test_tiled_decode_equals_untiled_for_a_local_model(tile, overlap):
    vae = local_vae()
    latent = torch.randn(2, 4, 21, 30)
    torch.testing.assert_close(vae.decode_tiled(latent, tile=tile, overlap=overlap), vae.decode(latent))


@pytest.mark.parametrize("tile, overlap", [(64, 16), (128, 64), (40, 12)])
def test_tiled_encode_equals_untiled_for_a_local_model(tile, overlap):
    vae = local_vae()
    image = torch.rand(1, 168, 240, 3)
    torch.testing.assert_close(vae.encode_tiled(image, tile=tile, overlap=overlap), vae.encode(image))


def test_tiles_blend_with_linear_ramps_in_the_overlap():
    constants = iter([-1.0, 1.0])  # the first tile decodes to -1 (pixel 0), the second to 1 (pixel 1)
    model = SimpleNamespace(config=SimpleNamespace(downscale=1),
                            decode=lambda z: torch.full((z.shape[0], 3, *z.shape[2:]), next(constants)))
    vae = VAE(model, 1.0, torch.device("cpu"), torch.float32)
    row = vae.decode_tiled(torch.zeros(1, 4, 1, 12), tile=8, overlap=4)[0, :, :, 0]  # tiles 0..7 and 4..11
    rising = torch.tensor([1 / 5, 7 / 15, 11 / 15, 1.0])  # the second tile's weights over pixels 4..7
    expected = rising / (rising + rising.flip(0))  # the first tile's weights fall symmetrically
    torch.testing.assert_close(row[0, 4:8], expected)
    assert torch.all(row[0, :4] == 0) and torch.all(row[0, 8:] == 1)


def test_out_of_memory_falls_back_to_tiles():
    vae = local_vae(fail_above=64 * 64)
    latent = torch.randn(1, 4, 100, 90)
    reference = local_vae().decode(latent)
    torch.testing.assert_close(vae.decode(latent), reference)
    assert vae.model.calls[0] == (1, 4, 100, 90) and len(vae.model.calls) > 2
    vae = local_vae(fail_above=600 * 600)
    image = torch.rand(1, 640, 640, 3)
    torch.testing.assert_close(vae.encode(image), local_vae().encode(image))
    assert vae.model.calls[0] == (1, 3, 640, 640) and len(vae.model.calls) > 2


def test_the_cpu_allocators_out_of_memory_falls_back_to_tiles_too():
    cpu_error = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                             "can't allocate memory: you tried to allocate 85899345920 bytes.")
    vae = local_vae(fail_above=64 * 64, error=cpu_error)
    latent = torch.randn(1, 4, 100, 90)
    torch.testing.assert_close(vae.decode(latent), local_vae().decode(latent))
    assert len(vae.model.calls) > 2


def test_other_errors_are_not_swallowed():
    vae = VAE(SimpleNamespace(config=SimpleNamespace(downscale=8), decode=lambda z: 1 / 0), 1.0,
              torch.device("cpu"), torch.float32)
    with pytest.raises(ZeroDivisionError):
        vae.decode(torch.zeros(1, 4, 2, 2))


class RecordingVAE:
    downscale = 8

    def __init__(self):
        self.encoded = None

    def encode(self, image):
        self.encoded = image.clone()
        return torch.zeros(image.shape[0], 4, image.shape[1] // 8, image.shape[2] // 8)


def test_encode_for_inpaint_greys_the_mask_and_grows_the_noise_mask():
    vae, image = RecordingVAE(), torch.rand(1, 34, 33, 3)
    mask = torch.zeros(34, 33)
    mask[12, 14] = 1.0  # one pixel; after the centre crop (offsets 1, 0) it sits at row 11, column 14
    (latent,) = vae_nodes.vae_encode_for_inpaint(image, vae, mask, 6)
    cropped = image[:, 1:33, 0:32]
    grey = cropped.clone()
    grey[0, 11, 14] = 0.5
    assert torch.equal(vae.encoded, grey)
    # a 6x6 square with padding 3 around one pixel covers rows/columns p-2 .. p+3
    expected = torch.zeros(1, 1, 32, 32)
    expected[0, 0, 9:15, 12:18] = 1.0
    assert torch.equal(latent["noise_mask"], expected)
    assert latent["samples"].shape == (1, 4, 4, 4)


def test_encode_for_inpaint_without_growth_and_soft_masks():
    vae = RecordingVAE()
    image = torch.rand(2, 16, 16, 3)
    mask = torch.full((1, 8, 8), 0.4)
    mask[0, :4] = 0.7  # resized x2 (bilinear), rounded: top half inpainted
    (latent,) = vae_nodes.vae_encode_for_inpaint(image, vae, mask, 0)
    rounded = F.interpolate(mask[:, None], size=(16, 16), mode="bilinear").round()
    assert torch.equal(latent["noise_mask"], rounded)
    keep = (1 - rounded).movedim(1, -1)
    assert torch.equal(vae.encoded, (image - 0.5) * keep + 0.5)


def test_node_declarations_follow_comfyui():
    registry = Registry.load()

    def inputs(type_id):
        return [(i.name, i.default, i.min, i.max, i.step) if i.is_widget else i.name for i in registry.get(type_id).inputs]

    assert inputs("VAEDecode") == ["samples", "vae"]
    assert inputs("VAEEncode") == ["pixels", "vae"]
    assert inputs("VAEDecodeTiled") == ["samples", "vae", ("tile_size", 512, 64, 4096, 32), ("overlap", 64, 0, 4096, 32),
                                        ("temporal_size", 64, 8, 4096, 4), ("temporal_overlap", 8, 4, 4096, 4)]
    assert inputs("VAEEncodeTiled") == ["pixels", "vae", ("tile_size", 512, 64, 4096, 64), ("overlap", 64, 0, 4096, 32),
                                        ("temporal_size", 64, 8, 4096, 4), ("temporal_overlap", 8, 4, 4096, 4)]
    assert inputs("VAEEncodeForInpaint") == ["pixels", "vae", "mask", ("grow_mask_by", 6, 0, 64, 1)]
    assert [o.type for o in registry.get("CheckpointLoaderSimple").outputs] == ["MODEL", "CLIP", "VAE"]
    assert [i.name for i in registry.get("CheckpointLoaderSimple").inputs] == ["ckpt_name"]
    assert [i.name for i in registry.get("VAELoader").inputs] == ["vae_name"]


def test_tiled_nodes_use_pixel_sizes_and_cap_the_overlap():
    vae = local_vae()
    latent = torch.randn(1, 4, 24, 40)
    (image,) = vae_nodes.vae_decode_tiled({"samples": latent}, vae, 128, 64)  # overlap capped to 32 px
    torch.testing.assert_close(image, vae.decode(latent))
    (encoded,) = vae_nodes.vae_encode_tiled(image, vae, 64, 32)
    torch.testing.assert_close(encoded["samples"], vae.encode(image))


def test_loader_nodes_and_file_fingerprint(tmp_path):
    from nodeflow.runtime.paths import Paths
    from tests.factories import write_tiny_checkpoint

    path = write_tiny_checkpoint(tmp_path / "checkpoints" / "tiny.safetensors")
    paths = Paths(models_dirs=(tmp_path,), assets_dir=tmp_path / "no-assets")
    assert "tiny.safetensors" in paths.list_models("checkpoints")
    ctx = SimpleNamespace(paths=paths, device="cpu", dtype="auto")
    model, clip, vae = loaders.checkpoint_loader_simple("tiny.safetensors", ctx)
    assert model.unet.config.model_channels == 32 and clip.encode("x")[0].shape == (1, 77, 32)
    assert vae.decode(torch.zeros(1, 4, 2, 2)).shape == (1, 16, 16, 3)
    fingerprint = Registry.load().get("CheckpointLoaderSimple").fingerprint
    before = fingerprint({"ckpt_name": "tiny.safetensors"}, paths)
    os.utime(path, ns=(1, 10**18))
    assert fingerprint({"ckpt_name": "tiny.safetensors"}, paths) != before


def test_a_pass_that_would_not_fit_is_tiled_up_front(monkeypatch):
    """No out-of-memory error needed (on Linux the CPU allocator may not raise one before the
    system runs out): the untiled pass's memory is estimated first."""
    from types import SimpleNamespace

    import nodeflow.image.vae as runtime

    model = LocalAutoencoder()
    model.config = SimpleNamespace(downscale=8, ch=128, ch_mult=(1, 2, 4, 4))
    vae = VAE(model, 0.18215, torch.device("cpu"), torch.float32)
    latent = torch.randn(1, 4, 100, 90)
    reference = local_vae().decode(latent)
    monkeypatch.setattr(runtime, "available_memory", lambda device: 10 * 2**30)  # plenty
    vae.decode(latent)
    assert model.calls == [(1, 4, 100, 90)]
    model.calls.clear()
    monkeypatch.setattr(runtime, "available_memory", lambda device: 64 * 2**20)  # 800x720 would need ~2.4 GB
    torch.testing.assert_close(vae.decode(latent), reference)
    assert model.calls and all(call[-2] * call[-1] <= 64 * 64 for call in model.calls)
