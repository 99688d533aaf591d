"""``--vram``: the auto rule (nodeflow.runtime.vram), block streaming (nodeflow.models.streaming),
the offloaded VAE (nodeflow.image.vae) and the loaders' wiring, all on the CPU.

Streaming copies weights even from the CPU to the CPU, so these tests see it happen. For the
wiring, the compute device is ``meta``: a forward on meta inputs fails on the first weight left
in CPU memory ("Tensor on device cpu is not on the expected device meta"), as one left there would
fail on a GPU, so a streamed model that runs on meta has every weight brought in by its blocks.
The GPU checks (same images as normal, SDXL's peak memory under 4 GiB) are in tests/test_cuda.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from nodeflow.engine.cache import measure
from nodeflow.engine.context import RunContext
from nodeflow.image.vae import VAE
from nodeflow.models.streaming import (on_device, pin_storage, stream_blocks, streamed_bytes, streaming_device,
                                       top_level_blocks, unstream)
from nodeflow.models.unet import UNetConfig, UNetModel
from nodeflow.models.vae import AutoencoderKL, VAEConfig
from nodeflow.runtime import vram as vram_module
from nodeflow.runtime.paths import Paths
from nodeflow.runtime.vram import HEADROOM_BYTES, resolve_vram, vram_mode, weights_size
from tests.project import ROOT

GiB = 2**30
CHECKPOINT = ROOT / "assets" / "nodeflow-tiny.safetensors"
CONTROLNET = ROOT / "assets" / "controlnet" / "nodeflow-tiny-mask.safetensors"
TINY_UNET = UNetConfig(in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2, 2),
                       num_res_blocks=2, transformer_depth=(1, 1, 0), middle_transformer_depth=1,
                       context_dim=128, num_heads=8)
#: SDXL-like: linear projections, the ADM input (label_emb), no attention at the first level
TINY_XL = UNetConfig(in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                     transformer_depth=(0, 2), middle_transformer_depth=2, context_dim=96, num_heads=None,
                     head_channels=16, use_linear_in_transformer=True, adm_in_channels=40)
TINY_VAE = VAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1)


# --- the auto rule --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["normal", "high"])
def test_normal_and_high_are_normal_everywhere(mode):
    assert resolve_vram(mode, "cuda", 7 * GiB, 1 * GiB) == "normal"
    assert resolve_vram(mode, "cpu", 7 * GiB, None) == "normal"


def test_low_is_low_on_cuda_only():
    assert resolve_vram("low", "cuda", 0, 80 * GiB) == "low"
    assert resolve_vram("low", "cpu", 7 * GiB, None) == "normal"
    assert resolve_vram("low", "mps", 7 * GiB, 1 * GiB) == "normal"


def test_auto_is_low_when_free_memory_is_short_of_weights_times_one_and_a_half_plus_a_gib():
    weights = 4 * GiB  # needs 4 x 1.5 + 1 = 7 GiB free
    assert resolve_vram("auto", "cuda", weights, 7 * GiB - 1) == "low"
    assert resolve_vram("auto", "cuda", weights, 6 * GiB + HEADROOM_BYTES) == "normal"
    assert resolve_vram("auto", "cuda", weights, 24 * GiB) == "normal"
    assert resolve_vram("auto", "cuda", weights, None) == "normal"  # unknown: as before
    assert resolve_vram("auto", "cpu", weights, 0) == "normal"
    assert resolve_vram("auto", "mps", weights, 0) == "normal"


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="lowest"):
        resolve_vram("lowest", "cuda", 0, 0)


def test_vram_mode_reads_the_file_size_and_the_free_memory_for_auto_on_cuda(tmp_path, monkeypatch):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x" * 1000)
    asked = []
    monkeypatch.setattr("nodeflow.runtime.devices.available_memory", lambda device: asked.append(device) or 1500)
    assert vram_mode("auto", "cpu", model) == "normal" and not asked  # never asks off CUDA
    monkeypatch.setattr(vram_module, "HEADROOM_BYTES", 0)
    assert vram_mode("auto", torch.device("cuda"), model) == "normal"  # 1500 free >= 1000 x 1.5
    model.write_bytes(b"x" * 1001)
    assert vram_mode("auto", torch.device("cuda"), model) == "low"
    assert vram_mode("low", "cpu", tmp_path / "missing.safetensors") == "normal"


def test_weights_size_of_a_folder_sums_its_files_and_a_missing_path_is_zero(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "a.safetensors").write_bytes(b"x" * 10)
    (tmp_path / "b.json").write_bytes(b"x" * 5)
    assert weights_size(tmp_path) == 15
    assert weights_size(tmp_path / "missing") == 0


# --- streaming ------------------------------------------------------------------------------------

def tiny_unet(config: UNetConfig = TINY_UNET, seed: int = 0) -> UNetModel:
    torch.manual_seed(seed)
    unet = UNetModel(config).eval().requires_grad_(False)
    with torch.no_grad():
        for parameter in unet.parameters():  # no zero layers: every block changes the output
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return unet


def unet_inputs(config: UNetConfig = TINY_UNET, batch: int = 2, device="cpu"):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, 16, 16, generator=generator)
    context = torch.randn(batch, 7, config.context_dim, generator=generator)
    extra = {"y": torch.randn(batch, config.adm_in_channels, generator=generator)} if config.adm_in_channels else {}
    move = lambda t: t.to(device)  # noqa: E731
    return (move(x), move(torch.tensor([10.0, 500.0][:batch])), move(context)), {k: move(v) for k, v in extra.items()}


def storage_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return dict((*module.named_parameters(), *module.named_buffers()))


def assert_holds_storage(module: nn.Module, storage: dict[str, torch.Tensor]) -> None:
    current = storage_of(module)
    assert current.keys() == storage.keys()
    assert all(current[name] is tensor for name, tensor in storage.items())


def test_top_level_blocks_of_the_unet_are_its_blocks_one_by_one():
    unet = tiny_unet(TINY_XL)
    blocks = top_level_blocks(unet)
    expected = [unet.time_embed, unet.label_emb, *unet.input_blocks, unet.middle_block, *unet.output_blocks, unet.out]
    assert sorted(map(id, blocks)) == sorted(map(id, expected))


@pytest.mark.parametrize("config", [TINY_UNET, TINY_XL], ids=["sd1", "sdxl"])
def test_a_streamed_unet_gives_exactly_the_same_output(config):
    unet = tiny_unet(config)
    args, kwargs = unet_inputs(config)
    with torch.no_grad():
        expected = unet(*args, **kwargs)
    stream_blocks(unet, "cpu")
    with torch.no_grad():
        streamed = unet(*args, **kwargs)
    with torch.inference_mode():
        inference = unet(*args, **kwargs)
    assert expected.abs().mean() > 0.01
    assert torch.equal(streamed, expected) and torch.equal(inference, expected)


def test_outside_a_call_every_weight_is_its_storage_and_inside_only_the_running_block_holds_copies():
    unet = tiny_unet()
    storage = storage_of(unet)
    stream_blocks(unet, "cpu")
    assert_holds_storage(unet, storage)
    seen = {}

    def record(layer, args, output):  # a layer inside input block 1, during its block's call
        seen["own"] = layer.weight
        seen["middle"] = unet.middle_block[0].in_layers[2].weight
        seen["out"] = unet.out[2].weight

    unet.input_blocks[1][0].in_layers[2].register_forward_hook(record)
    args, kwargs = unet_inputs()
    with torch.no_grad():
        unet(*args, **kwargs)
    own = storage["input_blocks.1.0.in_layers.2.weight"]
    assert seen["own"] is not own and seen["own"].data_ptr() != own.data_ptr()
    assert torch.equal(seen["own"], own)
    assert seen["middle"] is storage["middle_block.0.in_layers.2.weight"]
    assert seen["out"] is storage["out.2.weight"]
    assert_holds_storage(unet, storage)  # the copies were put back


@dataclass(frozen=True)
class AddToWeight:
    """A stand-in for a LoRA patch (nodeflow.loading.layer_deltas.LayerDelta's interface)."""

    parameter: str
    amount: float

    def new_weight(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.amount


def test_streaming_copies_the_weights_functional_call_substitutes_as_lora_does():
    from nodeflow.loading.lora import PatchedModule

    unet = tiny_unet()
    patches = (AddToWeight("input_blocks.1.0.in_layers.2.weight", 0.05), AddToWeight("out.2.bias", 0.2),
               AddToWeight("middle_block.1.proj_in.weight", -0.03))
    args, kwargs = unet_inputs()
    with torch.no_grad():
        plain = unet(*args, **kwargs)
        expected = PatchedModule(unet, patches)(*args, **kwargs)
    storage = storage_of(unet)
    stream_blocks(unet, "cpu")
    seen = []
    unet.input_blocks[1][0].in_layers[2].register_forward_hook(lambda layer, a, o: seen.append(layer.weight))
    patched = PatchedModule(unet, patches)
    with torch.inference_mode():
        streamed = patched(*args, **kwargs)
    assert not torch.equal(expected, plain)
    assert torch.equal(streamed, expected)
    substituted = patched._weights[("cpu",)]["input_blocks.1.0.in_layers.2.weight"]
    assert seen[0] is not substituted and torch.equal(seen[0], substituted)  # a copy of the patched weight
    assert_holds_storage(unet, storage)  # and functional_call could restore its own


def test_a_block_that_raises_still_puts_its_weights_back():
    unet = tiny_unet()
    storage = storage_of(unet)
    stream_blocks(unet, "cpu")
    (x, timesteps, context), _ = unet_inputs()
    with torch.no_grad(), pytest.raises(RuntimeError):
        unet(x, timesteps, context[..., :100])  # a context too narrow for the cross-attention
    assert_holds_storage(unet, storage)


def test_streaming_again_replaces_the_hooks_and_unstream_restores_the_plain_module():
    unet = tiny_unet()
    args, kwargs = unet_inputs()
    with torch.no_grad():
        expected = unet(*args, **kwargs)
    stream_blocks(unet, "cpu")
    stream_blocks(unet, "cpu")
    block = unet.input_blocks[1]
    assert len(block._forward_pre_hooks) == 1 and len(block._forward_hooks) == 1
    assert streaming_device(unet) == torch.device("cpu")
    unstream(unet)
    assert streaming_device(unet) is None
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in unet.modules())
    seen = []
    unet.input_blocks[1][0].in_layers[2].register_forward_hook(lambda layer, a, o: seen.append(layer.weight))
    with torch.no_grad():
        assert torch.equal(unet(*args, **kwargs), expected)
    assert seen[0] is unet.input_blocks[1][0].in_layers[2].weight


def test_a_streamed_unet_runs_on_another_device_with_every_weight_brought_by_its_block():
    unet = tiny_unet(TINY_XL)
    args, kwargs = unet_inputs(TINY_XL, device="meta")
    with pytest.raises(RuntimeError, match="device"):
        unet(*args, **kwargs)  # the weights are on the CPU, the inputs on meta
    stream_blocks(unet, "meta")
    with torch.inference_mode():
        output = unet(*args, **kwargs)
    assert output.device.type == "meta" and output.shape == (2, 4, 16, 16)
    assert all(t.device.type == "cpu" for t in storage_of(unet).values())


class Scaled(nn.Module):
    """A module with a weight of its own beside its block's (as a union ControlNet's task_embedding)."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 2)
        self.scale = nn.Parameter(torch.full((1,), 3.0))
        self.seen = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.scale)
        return self.layer(x) * self.scale


def test_the_modules_own_weights_are_copies_for_its_whole_call():
    model = Scaled()
    x = torch.ones(1, 2)
    expected = model(x)
    storage = storage_of(model)
    stream_blocks(model, "cpu")
    assert torch.equal(model(x), expected)
    assert model.seen[-1] is not storage["scale"] and torch.equal(model.seen[-1], storage["scale"])
    assert_holds_storage(model, storage)
    with torch.inference_mode():
        assert stream_blocks(model, "meta")(x.to("meta")).device.type == "meta"
    unstream(model)
    model(x)
    assert model.seen[-1] is storage["scale"] and not model._forward_pre_hooks


def test_weights_outside_every_block_are_refused():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match=r"1\.0\.weight"):
        stream_blocks(model, "cpu", blocks=[model[0]])


def test_a_tensor_shared_by_two_layers_is_copied_once():
    block = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    block[1].weight = block[0].weight
    model = nn.Sequential(block)
    seen = []
    block[1].register_forward_hook(lambda layer, a, o: seen.append((block[0].weight, block[1].weight)))
    stream_blocks(model, "cpu")
    model(torch.ones(1, 3))
    first, second = seen[0]
    assert first is second and first is not model[0][0].weight


def test_pinning_replaces_cpu_storage_by_pinned_copies_keeping_parameters_and_sharing(monkeypatch, caplog):
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: pinned.append(t) or t.clone())
    block = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.BatchNorm1d(3))
    block[1].weight = block[0].weight
    before = storage_of(block)
    stream_blocks(nn.Sequential(block), "cpu", pin=True)
    after = storage_of(block)
    assert len(pinned) == 8  # 5 parameters (the two weights shared as one) and the norm's 3 buffers
    assert all(after[name] is not before[name] and torch.equal(after[name], before[name]) for name in before)
    assert isinstance(block[0].weight, nn.Parameter) and block[0].weight is block[1].weight
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: (_ for _ in ()).throw(RuntimeError("no CUDA")))
    pin_storage([nn.Linear(2, 2)])
    assert "could not pin" in caplog.text


# --- union ControlNets and T2I-Adapters ----------------------------------------------------------

def tiny_union(seed: int = 0):
    """A union ControlNet of the tiny SDXL U-Net's shape (tests/family_files.py), random weights."""
    from nodeflow.models.controlnet import ControlNetConfig
    from nodeflow.models.controlnet_union import UnionConfig, UnionControlNetModel
    from tests.family_files import randomize, tiny_unet as family_unet

    union = UnionControlNetModel(ControlNetConfig(family_unet("sdxl")), UnionConfig(4, 64, 1, 8, 16))
    return randomize(union, seed).eval().requires_grad_(False)


def union_inputs(model, device="cpu"):
    config = model.config.unet
    generator = torch.Generator().manual_seed(3)
    tensors = (torch.randn(2, 4, 8, 8, generator=generator), torch.rand(2, 3, 64, 64, generator=generator),
               torch.tensor([10.0, 500.0]), torch.randn(2, 7, config.context_dim, generator=generator))
    y = torch.randn(2, config.adm_in_channels, generator=generator)
    return tuple(t.to(device) for t in tensors), {"y": y.to(device)}


def tiny_adapter(kind: str):
    """A full or light SD1 T2I-Adapter, two levels (32 and 64 wide), random weights."""
    from nodeflow.models.t2i_adapter import T2IAdapter, T2IAdapterConfig
    from tests.family_files import randomize

    config = T2IAdapterConfig(kind=kind, in_channels=3 * 64, channels=(32, 64),
                              inner_channels=(8, 16) if kind == "light" else ())
    return randomize(T2IAdapter(config), 0).eval().requires_grad_(False)


@pytest.mark.parametrize("control_type", [2, None], ids=["typed", "auto"])
def test_a_streamed_union_controlnet_gives_exactly_the_same_residuals(control_type):
    model = tiny_union()
    args, kwargs = union_inputs(model)
    with torch.no_grad():
        expected = model(*args, **kwargs, control_type=control_type)
    storage = storage_of(model)
    stream_blocks(model, "cpu")
    seen = []
    model.spatial_ch_projs.register_forward_pre_hook(lambda layer, a: seen.append(model.task_embedding))
    with torch.inference_mode():
        streamed = model(*args, **kwargs, control_type=control_type)
    assert all(torch.equal(a, b) for a, b in zip(streamed.skips, expected.skips, strict=True))
    assert torch.equal(streamed.middle, expected.middle) and expected.middle.abs().mean() > 0.01
    if control_type is not None:  # the root's task_embedding was a copy during the call
        assert seen[0] is not storage["task_embedding"] and torch.equal(seen[0], storage["task_embedding"])
    assert_holds_storage(model, storage)


def test_a_streamed_union_controlnet_runs_on_another_device_with_every_weight_brought_in():
    model = stream_blocks(tiny_union(), "meta")
    args, kwargs = union_inputs(model, device="meta")
    with torch.inference_mode():
        residuals = model(*args, **kwargs, control_type=1)
    assert residuals.middle.device.type == "meta"
    assert all(t.device.type == "cpu" for t in storage_of(model).values())


@pytest.mark.parametrize("kind", ["full", "light"])
def test_a_streamed_t2i_adapter_gives_exactly_the_same_features(kind):
    adapter = tiny_adapter(kind)
    hint = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = adapter(hint)
    storage = storage_of(adapter)
    stream_blocks(adapter, "cpu")
    seen = []
    adapter.body[1].register_forward_pre_hook(lambda block, a: seen.append(next(block.parameters())))
    with torch.inference_mode():
        streamed = adapter(hint)
    assert all(torch.equal(a, b) for a, b in zip(streamed, expected, strict=True))
    assert seen[0] is not next(adapter.body[1].parameters())
    assert_holds_storage(adapter, storage)
    with torch.inference_mode():
        on_meta = stream_blocks(adapter, "meta")(hint.to("meta"))
    assert [f.shape for f in on_meta] == [f.shape for f in expected] and on_meta[0].device.type == "meta"


# --- the offloaded VAE ----------------------------------------------------------------------------

def tiny_vae(offloaded: bool) -> VAE:
    torch.manual_seed(0)
    return VAE(AutoencoderKL(TINY_VAE).eval().requires_grad_(False), 0.18215, torch.device("cpu"), torch.float32,
               offloaded=offloaded)


def test_an_offloaded_vae_decodes_and_encodes_the_same_with_copies_of_its_weights(monkeypatch):
    plain, offloaded = tiny_vae(False), tiny_vae(True)
    weight = offloaded.model.decoder.conv_in.weight
    seen = []
    offloaded.model.decoder.conv_in.register_forward_hook(lambda layer, a, o: seen.append(layer.weight))
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(offloaded.decode(latent), plain.decode(latent))
    assert seen[0] is not weight and torch.equal(seen[0], weight)
    assert offloaded.model.decoder.conv_in.weight is weight
    image = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(offloaded.encode(image), plain.encode(image))
    placed = []
    real = on_device
    monkeypatch.setattr("nodeflow.image.vae.on_device", lambda *a: placed.append(a) or real(*a))
    tiled = offloaded.decode_tiled(latent, tile=4, overlap=2)  # 9 tiles, one placement of the weights
    assert len(placed) == 1 and len(seen) > 4
    torch.testing.assert_close(tiled, plain.decode_tiled(latent, tile=4, overlap=2), rtol=0, atol=0)


def test_a_vae_that_is_not_offloaded_uses_its_own_weights():
    vae = tiny_vae(False)
    seen = []
    vae.model.decoder.conv_in.register_forward_hook(lambda layer, a, o: seen.append(layer.weight))
    vae.decode(torch.zeros(1, 4, 4, 4))
    assert seen[0] is vae.model.decoder.conv_in.weight


# --- the loaders' wiring --------------------------------------------------------------------------

needs_checkpoint = pytest.mark.skipif(not CHECKPOINT.is_file(), reason="the embedded model is not in assets/")


def low_context(tmp_path: Path, monkeypatch) -> RunContext:
    """A run on ``meta`` that resolves to low VRAM (as a CUDA run with --vram low does)."""
    monkeypatch.setattr(vram_module, "vram_mode", lambda mode, device, path: "low")
    return RunContext(device="meta", vram="low", paths=Paths(models_dirs=(tmp_path,)))


@needs_checkpoint
def test_low_vram_on_the_cpu_changes_nothing():
    from nodeflow.loading.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(CHECKPOINT, device="cpu", low_vram=True)
    assert streaming_device(checkpoint.model.unet) is None and not checkpoint.vae.offloaded


@needs_checkpoint
def test_checkpoint_loader_in_a_low_vram_run_keeps_the_weights_on_the_cpu(tmp_path, monkeypatch):
    from nodeflow_nodes.loaders import checkpoint_loader_simple

    model, clip, vae = checkpoint_loader_simple("nodeflow-tiny.safetensors", low_context(tmp_path, monkeypatch))
    assert model.device == torch.device("meta") and model.dtype == torch.float32  # meta's dtype, as the GPU's
    assert streaming_device(model.unet) == torch.device("meta")
    assert all(p.device.type == "cpu" for p in model.unet.parameters())
    assert vae.offloaded and vae.device == torch.device("meta")
    assert all(p.device.type == "cpu" for p in vae.model.parameters())
    assert clip.device == torch.device("cpu")  # the text encoder computes on the CPU
    assert set(measure((model, clip, vae))) == {"cpu"}  # the cache counts no GPU bytes for them
    config = model.unet.config
    x = torch.zeros(2, config.in_channels, 8, 8, device="meta")
    context = torch.zeros(2, 77, config.context_dim, device="meta")
    with torch.inference_mode():
        assert model.unet(x, torch.zeros(2, device="meta"), context).device.type == "meta"
    with pytest.raises(NotImplementedError):  # meta holds no values to copy back; what matters is no device error
        vae.decode(torch.zeros(1, 4, 8, 8))


@needs_checkpoint
def test_unet_loader_in_a_low_vram_run_streams_the_unet(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from nodeflow.loading.checkpoint import load_checkpoint
    from nodeflow_nodes.loaders import unet_loader

    unet = load_checkpoint(CHECKPOINT).model.unet
    (tmp_path / "diffusion_models").mkdir()
    tensors = {k: v.contiguous() for k, v in unet.state_dict().items()}
    save_file(tensors, tmp_path / "diffusion_models" / "u.safetensors")
    (model,) = unet_loader("u.safetensors", "fp8_e4m3fn", low_context(tmp_path, monkeypatch))
    assert streaming_device(model.unet) == torch.device("meta")
    assert all(p.device.type == "cpu" for p in model.unet.parameters())


@needs_checkpoint
def test_clip_loader_in_a_low_vram_run_loads_on_the_cpu(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from nodeflow.loading.files import read_state_dict
    from nodeflow_nodes.loaders import clip_loader

    sd, _ = read_state_dict(CHECKPOINT)
    text = {k: v for k, v in sd.items() if k.startswith("cond_stage_model.")}
    (tmp_path / "text_encoders").mkdir()
    save_file(text, tmp_path / "text_encoders" / "clip.safetensors")
    (clip,) = clip_loader("clip.safetensors", "stable_diffusion", low_context(tmp_path, monkeypatch))
    assert clip.device == torch.device("cpu")


@pytest.mark.skipif(not CONTROLNET.is_file(), reason="the embedded ControlNet is not in assets/")
def test_controlnet_loader_in_a_low_vram_run_streams_the_controlnet(tmp_path, monkeypatch):
    from nodeflow_nodes.controlnet import controlnet_loader

    ctx = low_context(tmp_path, monkeypatch)
    (tmp_path / "controlnet").mkdir()
    (tmp_path / "controlnet" / CONTROLNET.name).symlink_to(CONTROLNET)
    (controlnet,) = controlnet_loader(CONTROLNET.name, ctx)
    assert streaming_device(controlnet) == torch.device("meta")
    assert all(p.device.type == "cpu" for p in controlnet.parameters())
    config = controlnet.config.unet
    x = torch.zeros(1, config.in_channels, 8, 8, device="meta")
    with torch.inference_mode():
        residuals = controlnet(x, torch.zeros(1, 3, 64, 64, device="meta"), torch.zeros(1, device="meta"),
                               torch.zeros(1, 77, config.context_dim, device="meta"))
    assert residuals.middle.device.type == "meta"



@pytest.mark.parametrize("kind", ["union", "t2i-adapter"])
def test_controlnet_loader_in_a_low_vram_run_streams_union_controlnets_and_t2i_adapters(tmp_path, monkeypatch,
                                                                                         kind):
    from safetensors.torch import save_file

    from nodeflow_nodes.controlnet import controlnet_loader

    model = tiny_union() if kind == "union" else tiny_adapter("full")
    (tmp_path / "controlnet").mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "controlnet" / "c.safetensors")
    (loaded,) = controlnet_loader("c.safetensors", low_context(tmp_path, monkeypatch))
    assert type(loaded) is type(model)
    assert streaming_device(loaded) == torch.device("meta")
    assert all(t.device.type == "cpu" for t in storage_of(loaded).values())
    with torch.inference_mode():
        if kind == "union":
            args, kwargs = union_inputs(loaded, device="meta")
            assert loaded(*args, **kwargs, control_type=0).middle.device.type == "meta"
        else:
            assert loaded(torch.zeros(1, 3, 64, 64, device="meta"))[0].device.type == "meta"


# --- the memory estimate of a streamed U-Net --------------------------------------------------------

def test_streamed_bytes_is_the_largest_block_plus_the_modules_own_weights():
    unet = tiny_unet(TINY_XL)
    assert streamed_bytes(unet) == 0
    stream_blocks(unet, "cpu")
    sizes = [sum(t.numel() * t.element_size() for t in storage_of(block).values()) for block in top_level_blocks(unet)]
    assert streamed_bytes(unet) == max(sizes) and max(sizes) < sum(sizes) / 3
    assert streamed_bytes(nn.Sequential(unet)) == max(sizes)  # found inside a wrapper (as LoRA's)
    assert streamed_bytes(stream_blocks(unet.half(), "cpu")) == max(sizes) // 2  # the storage dtype's bytes
    scaled = stream_blocks(Scaled(), "cpu")
    assert streamed_bytes(scaled) == 4 + (2 * 2 + 2) * 4  # scale, held for the whole call, plus the layer


def test_a_streamed_unet_gets_fewer_images_per_call_by_its_largest_block(monkeypatch):
    from nodeflow.sampling import ksampler, memory

    free = 2**30
    monkeypatch.setattr(memory, "available_memory", lambda device: free)
    latent = torch.Size((1, 4, 64, 64))
    per_image = memory.ACTIVATION_BYTES * 64 * 64 * 320  # 160 MiB
    plain = memory.images_per_call(320, torch.float32, torch.device("cpu"), latent)
    block = 3 * per_image // 2
    streamed = memory.images_per_call(320, torch.float32, torch.device("cpu"), latent, weights_bytes=block)
    assert plain == 6 and streamed == 4  # (1 GiB - latents) // 160 MiB, then less 240 MiB
    with pytest.raises(Exception, match="needs about 1.1 GiB"):  # one image still fits, but not with the block
        memory.images_per_call(320, torch.float32, torch.device("cpu"), latent, weights_bytes=free - per_image // 2)

    asked = []
    monkeypatch.setattr(ksampler, "images_per_call", lambda *args, weights_bytes: asked.append(weights_bytes) or 1)
    unet = stream_blocks(tiny_unet(), "cpu")
    run_tiny_sampler(unet)
    assert asked == [streamed_bytes(unet)] and asked[0] > 0
    run_tiny_sampler(unstream(unet))
    assert asked[1] == 0


def run_tiny_sampler(unet: UNetModel) -> None:
    """One euler step of run_sampler with ``unet`` (its guidance a stand-in that returns the input)."""
    from nodeflow.sampling.ksampler import run_sampler
    from nodeflow.sampling.model import DiffusionModel, LatentFormat, ModelSampling
    from nodeflow.sampling.samplers import get_sampler

    model = DiffusionModel(unet, ModelSampling.sd1(), LatentFormat(), torch.device("cpu"), torch.float32)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    run_sampler(model, lambda max_batch: (lambda x, sigma, **kw: x), get_sampler("euler"),
                torch.tensor([1.0, 0.0]), latent, torch.zeros(1, 4, 8, 8), 0)


def test_a_text_encoder_moved_to_the_cpu_computes_in_the_cpus_dtype():
    """--dtype fp16 is meant for the GPU: a text encoder that --vram low moves to the CPU runs in
    float32 there (fp16 on a CPU is slow or has no kernels); on the run's own device the user's
    dtype stands."""
    from nodeflow.loading.checkpoint import text_dtype

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert text_dtype(cuda, cpu, "fp16") == torch.float32
    assert text_dtype(cuda, cuda, "fp16") == torch.float16
    assert text_dtype(cpu, cpu, "bf16") == torch.bfloat16
