"""Diffusers-format ControlNets (a ``save_pretrained`` folder, or its weights file alone) load
into our ControlNet and give the residuals diffusers' own ControlNetModel gives."""

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodeflow.errors import ModelFileError
from nodeflow.loading.controlnet import load_controlnet
from nodeflow.runtime.paths import Paths
from nodeflow_nodes.controlnet import controlnet_loader
from tests.test_unet_parity import relative_error

diffusers = pytest.importorskip("diffusers")

CONTEXT_DIM = 48


def diffusers_controlnet(heads: int = 8, seed: int = 5, hint_widths=(16, 32, 96, 256)):
    """A small random diffusers ControlNetModel (zero convolutions made non-zero, so the
    residuals say something)."""
    torch.manual_seed(seed)
    model = diffusers.ControlNetModel(
        in_channels=4, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        block_out_channels=(32, 64, 64), layers_per_block=2, cross_attention_dim=CONTEXT_DIM,
        attention_head_dim=heads, norm_num_groups=32, conditioning_embedding_out_channels=hint_widths)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(reference model, its save_pretrained folder, the same weights as one .safetensors file)."""
    root = tmp_path_factory.mktemp("controlnets")
    reference = diffusers_controlnet()
    reference.save_pretrained(root / "folder")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(root / "single.safetensors"))
    return reference, root


def assert_same_residuals(ours, reference, hint_size: int = 128):
    torch.manual_seed(0)
    x, hint = torch.randn(2, 4, 16, 16), torch.rand(2, 3, hint_size, hint_size)
    t, context = torch.tensor([900.0, 20.0]), torch.randn(2, 77, CONTEXT_DIM)
    with torch.no_grad():
        got = ours(x, hint, t, context)
        down, middle = reference(x, t, encoder_hidden_states=context, controlnet_cond=hint, return_dict=False)
    assert len(got.skips) == len(down)
    for a, b in zip(got.skips, down):
        assert a.shape == b.shape and relative_error(a, b) < 1e-4
    assert relative_error(got.middle, middle) < 1e-4


@pytest.mark.parametrize("name", ["folder", "single.safetensors", "folder/diffusion_pytorch_model.safetensors"])
def test_diffusers_controlnet_gives_diffusers_residuals(saved, name):
    reference, root = saved
    assert_same_residuals(load_controlnet(root / name), reference)


def test_bin_folder_and_the_config_beside_a_file_give_the_heads(tmp_path):
    """Heads are not in the shapes: 4 heads from config.json, whether the folder or its file is given."""
    reference = diffusers_controlnet(heads=4, seed=7)
    reference.save_pretrained(tmp_path / "cn", safe_serialization=False)
    assert_same_residuals(load_controlnet(tmp_path / "cn"), reference)
    reference.save_pretrained(tmp_path / "st")
    loaded = load_controlnet(tmp_path / "st" / "diffusion_pytorch_model.safetensors")
    assert loaded.config.unet.num_heads == 4
    assert_same_residuals(loaded, reference)


def test_hint_encoder_with_equal_widths_keeps_its_strides(tmp_path):
    """Which hint convolutions have stride 2 follows their position, not a change of width."""
    reference = diffusers_controlnet(hint_widths=(16, 16, 32, 32))
    reference.save_pretrained(tmp_path / "cn")
    assert_same_residuals(load_controlnet(tmp_path / "cn"), reference)


def test_unmapped_keys_are_an_error_listing_them(saved, tmp_path):
    _, root = saved
    sd = load_file(str(root / "single.safetensors"))
    sd["controlnet_extra.weight"] = torch.zeros(1)
    save_file(sd, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ModelFileError, match=r"extra\.safetensors: ControlNet keys .*controlnet_extra\.weight"):
        load_controlnet(tmp_path / "extra.safetensors")


def test_refusals_name_the_file_and_the_problem(saved, tmp_path):
    _, root = saved
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="empty: .*not a diffusers ControlNet folder"):
        load_controlnet(tmp_path / "empty")
    sd = load_file(str(root / "single.safetensors"))
    save_file({**sd, "add_embedding.linear_1.weight": torch.zeros(1)}, str(tmp_path / "xl.safetensors"))
    # an SDXL ADM input (add_embedding) loads since issue 14 (tests/test_family_controlnet.py); a broken one
    # is refused naming the file
    with pytest.raises(ModelFileError, match="xl.safetensors: the ControlNet does not match its configuration"):
        load_controlnet(tmp_path / "xl.safetensors")
    shuffle = tmp_path / "shuffle"
    shuffle.mkdir()
    save_file(sd, str(shuffle / "diffusion_pytorch_model.safetensors"))
    config = json.loads((root / "folder" / "config.json").read_text()) | {"global_pool_conditions": True}
    (shuffle / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="shuffle: .*global_pool_conditions"):
        load_controlnet(shuffle)
    unet = tmp_path / "unet"
    unet.mkdir()
    save_file(sd, str(unet / "diffusion_pytorch_model.safetensors"))
    (unet / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ModelFileError, match="describes a UNet2DConditionModel, not a ControlNetModel"):
        load_controlnet(unet)


def test_controlnet_loader_reaches_a_diffusers_folder_by_name(saved, tmp_path):
    """The model list names a diffusers folder (or the weights file in it); either loads."""
    reference, root = saved
    folder = tmp_path / "controlnet" / "canny-diffusers"
    folder.mkdir(parents=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        (folder / name).write_bytes((root / "folder" / name).read_bytes())
    ctx = SimpleNamespace(paths=Paths(models_dirs=(tmp_path,)), device="cpu", dtype="auto")
    names = [n for n in ctx.paths.list_models("controlnet") if n.startswith("canny-diffusers")]
    assert names
    for name in names:
        (model,) = controlnet_loader(name, ctx)
        assert_same_residuals(model, reference)
