"""Union ControlNets (xinsir's ControlNet++ "controlnet-union-sdxl-1.0" and ProMax) through
ControlNetLoader and SetUnionControlNetType.

The reference is diffusers' ControlNetUnionModel on random weights, in a scaled-down SDXL
configuration (the tiny SDXL U-Net of tests/family_files.py; condition transformer 64 wide, 8
heads). xinsir's files are diffusers' ControlNet keys plus the union parts under the names of
xinsir's own module (ControlNetPlus, models/controlnet_union.py); diffusers has no converter for
them because its module keeps those names: XINSIR_UNION_KEYS, written here from the original
repository, checks that, and the file is diffusers' state dict as it is. Residuals must agree to
a relative error of 1e-4 (fp32).

diffusers (like xinsir's original) runs the condition transformer's attention over the batch
(``nn.MultiheadAttention`` without ``batch_first``); ComfyUI and nodeflow per batch row. So the
reference runs one row at a time, and a batch whose rows share their control image, where both
readings agree (nodeflow.models.controlnet_union).
"""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import ModelFileError, NodeInputError
from nodeflow.loading.controlnet import load_controlnet
from nodeflow.models.controlnet_union import UNION_TYPES, TypedUnionControlNet, UnionControlNetModel
from nodeflow.sampling.controlnet import ControlNetHook
from nodeflow_nodes.controlnet import UNION_TYPE_CHOICES, controlnet_apply_advanced, set_union_controlnet_type
from tests.family_files import randomize, tiny_unet
from tests.test_family_controlnet import inputs
from tests.test_unet_parity import relative_error

diffusers = pytest.importorskip("diffusers")
from diffusers.models.controlnets.controlnet_union import ControlNetUnionModel  # noqa: E402

#: the union parts of xinsir's ControlNetModel_Union (ControlNetPlus/models/controlnet_union.py:
#: task_embedding, transformer_layes = nn.Sequential of ResidualAttentionBlock(attn =
#: nn.MultiheadAttention, ln_1, mlp = c_fc/gelu/c_proj, ln_2), spatial_ch_projs, and
#: control_add_embedding = TimestepEmbedding(linear_1, linear_2)), one transformer layer
XINSIR_UNION_KEYS = {
    "task_embedding",
    *(f"transformer_layes.0.{name}" for name in (
        "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
        "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
        "ln_2.weight", "ln_2.bias")),
    "spatial_ch_projs.weight", "spatial_ch_projs.bias",
    "control_add_embedding.linear_1.weight", "control_add_embedding.linear_1.bias",
    "control_add_embedding.linear_2.weight", "control_add_embedding.linear_2.bias",
}
CONTROLNET_PREFIXES = ("time_embedding.", "add_embedding.", "conv_in.", "down_blocks.", "mid_block.",
                       "controlnet_cond_embedding.", "controlnet_down_blocks.", "controlnet_mid_block.")
CONFIG = tiny_unet("sdxl")


def reference_union(control_types: int, seed: int = 21) -> ControlNetUnionModel:
    """A random diffusers ControlNetUnionModel of the tiny SDXL U-Net's shape."""
    c = CONFIG
    model = ControlNetUnionModel(
        in_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        block_out_channels=(64, 128), layers_per_block=1, cross_attention_dim=c.context_dim,
        attention_head_dim=(1, 2), transformer_layers_per_block=(1, 2), use_linear_projection=True,
        conditioning_embedding_out_channels=(16, 32, 96, 256), norm_num_groups=32,
        addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=c.adm_in_channels, num_control_type=control_types,
        num_trans_channel=64, num_trans_head=8, num_trans_layer=1, num_proj_channel=64)
    randomize(model, seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # the task embeddings as large as the features they are added to, and a hint encoder
        # whose output depends on the control image more than on its biases
        model.task_embedding.copy_(torch.randn(model.task_embedding.shape, generator=generator))
        for name, parameter in model.controlnet_cond_embedding.named_parameters():
            if name.endswith("weight"):
                parameter.mul_(3.0)
    return model.eval()


@pytest.fixture(scope="module", params=[8, 6], ids=["promax", "union-1.0"])
def saved(request, tmp_path_factory):
    """(reference, a folder with it as xinsir's single file and as a save_pretrained folder)."""
    root = tmp_path_factory.mktemp(f"union-{request.param}")
    reference = reference_union(request.param)
    sd = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(sd, str(root / "union.safetensors"))
    reference.save_pretrained(root / "folder")
    return reference, root


def distinct_rows(hint: torch.Tensor) -> torch.Tensor:
    """Control images whose rows differ on average (a dark and a light one), so that attention
    across the batch, which diffusers does and nodeflow must not, would show."""
    return torch.cat([0.2 * hint[:1], 0.8 + 0.2 * hint[1:2]])


def reference_residuals(reference, control_type: int | None, x, hint, t, context, added) -> tuple[list, torch.Tensor]:
    """diffusers' residuals, one batch row at a time. ``control_type`` None ("auto", ComfyUI's
    reading: the type embedding of an all-zero one-hot and the encoded hint added as it is) is
    diffusers with its condition shift switched off (spatial_ch_projs zero) and no type set."""
    if control_type is None:
        reference = copy.deepcopy(reference)
        with torch.no_grad():
            reference.spatial_ch_projs.weight.zero_()
            reference.spatial_ch_projs.bias.zero_()
    one_hot = torch.zeros(1, reference.config.num_control_type)
    if control_type is not None:
        one_hot[0, control_type] = 1.0
    rows = []
    for i in range(x.shape[0]):
        row_added = {k: v[i:i + 1] for k, v in added.items()}
        with torch.no_grad():
            rows.append(reference(x[i:i + 1], t[i:i + 1], encoder_hidden_states=context[i:i + 1],
                                  controlnet_cond=[hint[i:i + 1]], control_type=one_hot,
                                  control_type_idx=[0 if control_type is None else control_type],
                                  added_cond_kwargs=row_added, return_dict=False))
    down = [torch.cat([row[0][k] for row in rows]) for k in range(len(rows[0][0]))]
    return down, torch.cat([row[1] for row in rows])


def assert_close_residuals(got, down, middle) -> None:
    assert len(got.skips) == len(down)
    for a, b in zip(got.skips, down):
        assert a.shape == b.shape and relative_error(a, b) < 1e-4
    assert relative_error(got.middle, middle) < 1e-4


def test_xinsir_keys_are_diffusers_keys(saved):
    """The union parts of the file written from diffusers carry xinsir's names, nothing else extra."""
    reference, _ = saved
    extra = {k for k in reference.state_dict() if not k.startswith(CONTROLNET_PREFIXES)}
    assert extra == XINSIR_UNION_KEYS


@pytest.mark.parametrize("name", ["union.safetensors", "folder", "folder/diffusion_pytorch_model.safetensors"])
def test_union_controlnet_loads_and_equals_diffusers_for_every_type(saved, name):
    reference, root = saved
    loaded = load_controlnet(root / name)
    types = reference.config.num_control_type
    assert isinstance(loaded, UnionControlNetModel) and loaded.family == "SDXL"
    assert loaded.union.control_types == types and loaded.union.channels == 64
    x, hint, t, context, y, extra = inputs(CONFIG)
    hint, added = distinct_rows(hint), extra["added_cond_kwargs"]
    results = {}
    for control_type in [None, *range(types)]:
        with torch.no_grad():
            got = loaded(x, hint, t, context, y=y, control_type=control_type)
        assert_close_residuals(got, *reference_residuals(reference, control_type, x, hint, t, context, added))
        results[control_type] = got.middle
    # each type guides differently, and "auto" differently from all of them
    assert min(relative_error(results[a], results[b]) for a in results for b in results if a != b) > 1e-3


def test_a_batch_sharing_its_control_image_equals_diffusers_batched(saved):
    reference, root = saved
    loaded = load_controlnet(root / "union.safetensors")
    x, hint, t, context, y, extra = inputs(CONFIG)
    hint = hint[:1].expand(2, -1, -1, -1)
    one_hot = torch.zeros(2, reference.config.num_control_type)
    one_hot[:, 3] = 1.0
    with torch.no_grad():
        got = loaded(x, hint, t, context, y=y, control_type=3)
        down, middle = reference(x, t, encoder_hidden_states=context, controlnet_cond=[hint], control_type=one_hot,
                                 control_type_idx=[3], return_dict=False, **extra)
    assert_close_residuals(got, down, middle)


def test_set_union_controlnet_type_selects_the_type_and_auto_undoes_it(saved):
    reference, root = saved
    network = load_controlnet(root / "union.safetensors")
    assert UNION_TYPE_CHOICES == ["auto", *UNION_TYPES]
    (depth,) = set_union_controlnet_type(network, "depth")
    assert isinstance(depth, TypedUnionControlNet) and depth.network is network and depth.control_type == 1
    assert depth.config == network.config and depth.family == "SDXL" and depth.source == "union.safetensors"
    (canny,) = set_union_controlnet_type(depth, "canny/lineart/anime_lineart/mlsd")
    assert canny.network is network and canny.control_type == 3 and depth.control_type == 1
    (auto,) = set_union_controlnet_type(canny, "auto")
    assert auto is network
    x, hint, t, context, y, _ = inputs(CONFIG)
    with torch.no_grad():
        assert torch.equal(canny(x, hint, t, context, y=y).middle,
                           network(x, hint, t, context, y=y, control_type=3).middle)


def test_a_type_the_file_does_not_know_is_refused_naming_it(saved):
    reference, root = saved
    network = load_controlnet(root / "union.safetensors")
    if reference.config.num_control_type == 8:
        (typed,) = set_union_controlnet_type(network, "repaint")
        assert typed.control_type == 7
        return
    with pytest.raises(NodeInputError, match=r"union\.safetensors knows 6 control types \(openpose, .*segment\), "
                                             r"not 'tile'"):
        set_union_controlnet_type(network, "tile")


def test_the_typed_union_guides_sampling_through_the_apply_node(saved):
    """ControlNetApplyAdvanced takes the typed network; its hook gives the typed residuals times the strength."""
    _, root = saved
    network = load_controlnet(root / "union.safetensors")
    (typed,) = set_union_controlnet_type(network, "openpose")
    image = torch.rand(1, 128, 128, 3)
    cond = [(torch.zeros(1, 77, CONFIG.context_dim), {})]
    positive, _ = controlnet_apply_advanced(cond, cond, typed, image, 0.5, 0.0, 1.0)
    hook = positive[0][1]["control"]
    assert isinstance(hook, ControlNetHook) and hook.controlnet is typed
    x, _, t, context, y, _ = inputs(CONFIG)
    model = type("Model", (), {"family": "SDXL", "name": "tiny", "unet": type("U", (), {"config": CONFIG})()})()
    got = hook.residuals(x, t, context, t, model, y=y)
    with torch.no_grad():
        expected = network(x, image.movedim(-1, 1).expand(2, -1, -1, -1), t, context, y=y, control_type=0)
    torch.testing.assert_close(got.middle, expected.middle * 0.5)


def test_other_controlnets_pass_through_set_union_controlnet_type(caplog):
    plain = object()
    assert set_union_controlnet_type(plain, "auto") == (plain,)
    assert set_union_controlnet_type(plain, "depth") == (plain,)
    assert "not a union ControlNet" in caplog.text


def test_a_broken_union_file_is_one_line_naming_it(saved, tmp_path):
    reference, _ = saved
    sd = {k: v.contiguous() for k, v in reference.state_dict().items() if not k.startswith("control_add_embedding.")}
    save_file(sd, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ModelFileError, match=r"broken\.safetensors: the ControlNet does not match its configuration"):
        load_controlnet(tmp_path / "broken.safetensors")


def _run_api_workflow(tmp_path, union_type: str, strength: float):
    """A ComfyUI API workflow on the tiny SDXL checkpoint: the union ControlNet typed by
    SetUnionControlNetType, applied by ControlNetInpaintingAliMamaApply (image and mask from
    LoadImage). Returns the saved image's pixels."""
    import json

    import numpy as np
    from PIL import Image

    from nodeflow.engine.executor import Executor
    from nodeflow.engine.registry import Registry
    from nodeflow.formats import load_workflow
    from nodeflow.runtime.paths import Paths

    api = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-xl.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red square", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "10": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "union.safetensors"}},
        "20": {"class_type": "SetUnionControlNetType", "inputs": {"control_net": ["10", 0], "type": union_type}},
        "11": {"class_type": "LoadImage", "inputs": {"image": "control.png"}},
        "12": {"class_type": "ControlNetInpaintingAliMamaApply", "inputs": {
            "positive": ["6", 0], "negative": ["7", 0], "control_net": ["20", 0], "vae": ["4", 2],
            "image": ["11", 0], "mask": ["11", 1], "strength": strength, "start_percent": 0.0, "end_percent": 1.0}},
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "positive": ["12", 0], "negative": ["12", 1], "latent_image": ["5", 0], "seed": 42,
            "steps": 3, "cfg": 6.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "union"}},
    }
    (tmp_path / "api.json").write_text(json.dumps(api))
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "tmp", assets_dir=tmp_path / "no-assets")
    result = Executor(Registry.load(paths), paths).run(load_workflow(tmp_path / "api.json"))
    [saved] = result.outputs["9"][0]["images"]
    return np.asarray(Image.open(saved)).astype(np.int16)


def test_a_comfyui_workflow_with_a_typed_union_controlnet_runs_on_sdxl(saved, tmp_path):
    """The type reaches sampling (each type, and "auto", gives another image; strength 0 none);
    the same workflow gives the same pixels twice."""
    from PIL import Image

    from tests.family_files import write_family_checkpoint

    reference, root = saved
    if reference.config.num_control_type != 8:
        pytest.skip("one file is enough")
    write_family_checkpoint(tmp_path / "models" / "checkpoints" / "tiny-xl.safetensors", "sdxl")
    (tmp_path / "models" / "controlnet").mkdir(parents=True)
    (tmp_path / "models" / "controlnet" / "union.safetensors").write_bytes((root / "union.safetensors").read_bytes())
    (tmp_path / "in").mkdir()
    pixels = torch.zeros(64, 64, 4, dtype=torch.uint8)
    pixels[16:48, 24:56, :3], pixels[..., 3] = 255, 255
    Image.fromarray(pixels.numpy()).save(tmp_path / "in" / "control.png")
    depth = _run_api_workflow(tmp_path, "depth", 1.0)
    assert depth.shape == (64, 64, 3) and depth.std() > 0
    assert (depth == _run_api_workflow(tmp_path, "depth", 1.0)).all()
    for other in [_run_api_workflow(tmp_path, "canny/lineart/anime_lineart/mlsd", 1.0),
                  _run_api_workflow(tmp_path, "auto", 1.0), _run_api_workflow(tmp_path, "depth", 0.0)]:
        assert abs(depth - other).mean() > 0.5
