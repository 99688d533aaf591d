"""SD2.x and SDXL ControlNets through ControlNetLoader (issue 14).

Scaled-down ControlNets of each family (the U-Nets of tests/family_files.py: linear projections,
64 channels per head; SDXL's with its ADM input ``label_emb``) with random weights, written in the
original layout (``control_model.*`` and bare) and in diffusers' (a ``save_pretrained`` folder,
and its weights file alone, without the config that states the heads). The reference is diffusers'
own ControlNetModel: for the original layout it holds the weights as diffusers' single-file
converter (``convert_controlnet_checkpoint``) reads them, loaded with ``strict=True``, so that a
key or shape of ours that is not the real layout fails. Residuals must agree to 1e-4 (fp32).

Then a whole SDXL workflow (CheckpointLoaderSimple, ControlNetLoader, ControlNetApplyAdvanced,
KSampler, VAEDecode, SaveImage) on a tiny SDXL checkpoint and ControlNet, and the refusal of a
ControlNet of another family, on one line naming the file and both families.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import NodeflowError
from nodeflow.loading.controlnet import load_controlnet
from nodeflow.models.controlnet import ControlNetConfig, ControlNetModel
from nodeflow.sampling.adm import encode_adm
from tests.family_files import TINY_G, randomize, tiny_unet, write_family_checkpoint
from tests.test_unet_parity import relative_error, tiny_config

diffusers = pytest.importorskip("diffusers")
from diffusers.loaders import single_file_utils as sfu  # noqa: E402

FAMILIES = ["sd2", "sdxl"]


def our_controlnet(family: str, seed: int = 11) -> ControlNetModel:
    """A random ControlNet for the tiny U-Net of ``family`` (zero convolutions non-zero, so every
    residual says something)."""
    config = ControlNetConfig(tiny_unet(family) if family != "sd1" else tiny_config())
    return randomize(ControlNetModel(config), seed)


def reference(ours: ControlNetModel):
    """diffusers' ControlNetModel of the same architecture, holding our weights as diffusers' single-file
    converter reads them from the original layout."""
    c = ours.config.unet
    model = diffusers.ControlNetModel(
        in_channels=c.in_channels, down_block_types=["CrossAttnDownBlock2D" if d else "DownBlock2D"
                                                     for d in c.transformer_depth],
        block_out_channels=[c.model_channels * m for m in c.channel_mult], layers_per_block=c.num_res_blocks,
        cross_attention_dim=c.context_dim, attention_head_dim=[c.model_channels * m // 64 for m in c.channel_mult],
        transformer_layers_per_block=list(c.transformer_depth), use_linear_projection=True,
        conditioning_embedding_out_channels=(16, 32, 96, 256), norm_num_groups=32,
        **({"addition_embed_type": "text_time", "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": c.adm_in_channels} if c.adm_in_channels else {}))
    sd = ours.state_dict()
    converted = sfu.convert_controlnet_checkpoint({"control_model." + k: v for k, v in sd.items()}, model.config)
    if c.adm_in_channels:  # diffusers' own table for these; its converter leaves them to the caller
        for diffusers_key, ldm_key in sfu.DIFFUSERS_TO_LDM_MAPPING["controlnet"]["addition_embed_type"].items():
            converted[diffusers_key] = sd[ldm_key]
    model.load_state_dict(converted, strict=True)
    return model.eval()


def inputs(config, batch: int = 2):
    """(x, hint, t, context, y or None, diffusers' added_cond_kwargs) for a 16x16 latent."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(batch, 4, 16, 16, generator=generator)
    hint = torch.rand(batch, 3, 128, 128, generator=generator)
    t = torch.tensor([900.0, 20.0][:batch])
    context = torch.randn(batch, 77, config.context_dim, generator=generator)
    if not config.adm_in_channels:
        return x, hint, t, context, None, {}
    pooled = torch.randn(batch, TINY_G["projection_dim"], generator=generator)
    options = [{"pooled_output": pooled[i:i + 1], "height": 1024 - 128 * i, "width": 768 + 64 * i,
                "crop_h": 16 * i, "crop_w": 8 + 24 * i, "target_height": 1088, "target_width": 736 - 32 * i}
               for i in range(batch)]
    y = torch.cat([encode_adm(o, 512, 512, channels=config.adm_in_channels) for o in options])
    time_ids = torch.tensor([[o["height"], o["width"], o["crop_h"], o["crop_w"], o["target_height"],
                              o["target_width"]] for o in options], dtype=torch.float32)
    return x, hint, t, context, y, {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}


def assert_same_residuals(loaded: ControlNetModel, expected_model) -> None:
    config = loaded.config.unet
    x, hint, t, context, y, extra = inputs(config)
    with torch.no_grad():
        got = loaded(x, hint, t, context, **({} if y is None else {"y": y}))
        down, middle = expected_model(x, t, encoder_hidden_states=context, controlnet_cond=hint,
                                      return_dict=False, **extra)
    assert len(got.skips) == len(down)
    for a, b in zip(got.skips, down):
        assert a.shape == b.shape and relative_error(a, b) < 1e-4
    assert relative_error(got.middle, middle) < 1e-4
    if y is not None:  # the ADM input reaches the ControlNet: other sizes, other residuals
        with torch.no_grad():
            other = loaded(x, hint, t, context, y=y.flip(0))
        assert relative_error(other.middle, middle) > 1e-3


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    """(family, our ControlNet, diffusers' reference, a folder with it in every layout)."""
    family = request.param
    root = tmp_path_factory.mktemp(f"cn-{family}")
    ours = our_controlnet(family)
    expected = reference(ours)
    sd = {k: v.contiguous() for k, v in ours.state_dict().items()}
    save_file({"control_model." + k: v for k, v in sd.items()}, str(root / "original.safetensors"))
    save_file(sd, str(root / "bare.safetensors"))
    expected.save_pretrained(root / "folder")
    save_file({k: v.contiguous() for k, v in expected.state_dict().items()}, str(root / "diffusers.safetensors"))
    return family, ours, expected, root


@pytest.mark.parametrize("name", ["original.safetensors", "bare.safetensors", "folder", "diffusers.safetensors",
                                  "folder/diffusion_pytorch_model.safetensors"])
def test_family_controlnet_loads_and_equals_diffusers(saved, name):
    family, ours, expected, root = saved
    loaded = load_controlnet(root / name)
    assert loaded.config == ours.config  # 64 channels per head, from the family (no metadata) or config.json
    assert loaded.family == {"sd2": "SD2.x", "sdxl": "SDXL"}[family] and loaded.source == root.joinpath(name).name
    assert_same_residuals(loaded, expected)


def _write_workflow_files(tmp_path, controlnet: ControlNetModel, name: str):
    from PIL import Image

    write_family_checkpoint(tmp_path / "models" / "checkpoints" / "tiny-xl.safetensors", "sdxl")
    (tmp_path / "models" / "controlnet").mkdir(parents=True, exist_ok=True)
    save_file({"control_model." + k: v.contiguous() for k, v in controlnet.state_dict().items()},
              str(tmp_path / "models" / "controlnet" / name))
    (tmp_path / "in").mkdir(exist_ok=True)
    mask = torch.zeros(64, 64, 3, dtype=torch.uint8)
    mask[16:48, 24:56] = 255
    Image.fromarray(mask.numpy()).save(tmp_path / "in" / "mask.png")


def _run(tmp_path, overrides: list[str]):
    import numpy as np
    from PIL import Image

    from nodeflow.cli import apply_override
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.registry import Registry
    from nodeflow.formats import load_workflow
    from nodeflow.runtime.paths import Paths
    from tests.project import ROOT

    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "tmp", assets_dir=tmp_path / "no-assets")
    workflow = load_workflow(ROOT / "workflows" / "controlnet.json")
    for override in ["4.ckpt_name=tiny-xl.safetensors", "3.steps=3", "11.image=mask.png", *overrides]:
        apply_override(workflow, override)
    result = Executor(Registry.load(paths), paths).run(workflow)
    [saved] = result.outputs["9"][0]["images"]
    return np.asarray(Image.open(saved)).astype(np.int16)


def test_sdxl_controlnet_workflow_changes_the_image_and_is_deterministic(tmp_path):
    """The y of each conditioning entry reaches the SDXL ControlNet through ControlNetApplyAdvanced
    (without it, its label_emb would refuse to run); the ControlNet changes the image; the same
    workflow gives the same pixels twice."""
    _write_workflow_files(tmp_path, our_controlnet("sdxl"), "tiny-xl-cn.safetensors")
    with_cn = _run(tmp_path, ["10.control_net_name=tiny-xl-cn.safetensors"])
    again = _run(tmp_path, ["10.control_net_name=tiny-xl-cn.safetensors"])
    without = _run(tmp_path, ["10.control_net_name=tiny-xl-cn.safetensors", "12.strength=0"])
    assert with_cn.shape == (64, 64, 3) and with_cn.std() > 0
    assert (with_cn == again).all()
    assert abs(with_cn - without).mean() > 1.0


@pytest.mark.parametrize("family, name", [("sd1", "SD1.x"), ("sd2", "SD2.x")])
def test_controlnet_of_another_family_is_refused_naming_the_file_and_both_families(tmp_path, family, name):
    _write_workflow_files(tmp_path, our_controlnet(family), f"{family}-cn.safetensors")
    with pytest.raises(NodeflowError) as raised:
        _run(tmp_path, [f"10.control_net_name={family}-cn.safetensors"])
    message = str(raised.value)
    assert f"{family}-cn.safetensors: an {name} ControlNet cannot guide an SDXL model" in message
    assert "\n" not in message


def test_sd1_controlnet_is_still_sd1():
    """The family detection keeps SD1 ControlNets at SD1's 8 heads (conv projections, 768-less context)."""
    ours = our_controlnet("sd1")
    from nodeflow.loading.controlnet import controlnet_family

    assert controlnet_family(None, ours.state_dict()) == "sd1"
