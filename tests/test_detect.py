"""What a file is, from a small table of fingerprint keys and shapes (synthetic state dicts)."""

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import ModelFileError
from nodeflow.loading.detect import describe_keys, detect_kind
from nodeflow.loading.checkpoint import load_checkpoint, load_vae

U = "model.diffusion_model."


def unet(in_channels=4, context=768, prefix=U):
    return {prefix + "input_blocks.0.0.weight": torch.empty(320, in_channels, 3, 3, dtype=torch.float16),
            prefix + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.empty(320, context, dtype=torch.float16)}


VAE_KEYS = {"encoder.conv_in.weight": torch.empty(1), "decoder.conv_out.weight": torch.empty(1)}


@pytest.mark.parametrize("sd, kind", [
    (unet() | {"cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.empty(1)}, "sd1"),
    (unet(in_channels=9), "sd1-inpaint"),
    (unet(context=1024), "sd2"),
    (unet() | {"cond_stage_model.model.ln_final.weight": torch.empty(1)}, "sd2"),
    (unet(in_channels=9, context=1024), "sd2-inpaint"),
    (unet(context=1024) | {"v_pred": torch.empty(0)}, "sd2-v"),
    (unet(context=2048) | {U + "label_emb.0.0.weight": torch.empty(1)}, "sdxl"),
    (unet(context=1280) | {"conditioner.embedders.0.model.ln_final.weight": torch.empty(1)}, "sdxl-refiner"),
    ({"first_stage_model." + k: v for k, v in VAE_KEYS.items()}, "vae"),
    (VAE_KEYS, "vae"),
    ({"control_model.zero_convs.0.0.weight": torch.empty(1)}, "controlnet"),
    ({"zero_convs.0.0.weight": torch.empty(1)}, "controlnet"),
    ({"controlnet_cond_embedding.conv_in.weight": torch.empty(1)}, "controlnet"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.empty(1)}, "lora"),
    ({"lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": torch.empty(1)}, "lora"),
    ({"unet.down_blocks.0.attentions.0.to_q.lora_A.weight": torch.empty(1)}, "lora"),
    ({"adapter.body.0.resnets.0.block1.weight": torch.empty(1)}, "t2i-adapter"),
    ({"conv_in.weight": torch.empty(1), "body.0.block1.weight": torch.empty(1)}, "t2i-adapter"),
    ({"foo.weight": torch.empty(1)}, "unknown"),
    ({}, "unknown"),
])
def test_kinds(sd, kind):
    assert detect_kind(sd) == kind


def test_describe_keys_is_short_and_sorted():
    sd = {f"k{i}": torch.empty(1) for i in range(9, 0, -1)}
    assert describe_keys(sd, 3) == "k1, k2, k3 ..."
    assert describe_keys({}) == "(no tensors)"


def test_other_families_are_refused_clearly(tmp_path):
    """SD2.x and SDXL load (tests/test_sdxl_sd2_loading.py); families nodeflow does not run are
    named, on one line, before anything is built."""
    save_file({U + "joint_blocks.0.context_block.attn.qkv.weight": torch.empty(2)}, str(tmp_path / "sd3.safetensors"))
    with pytest.raises(ModelFileError, match=r"sd3\.safetensors: this is a Stable Diffusion 3 / 3\.5 model, a model "
                                             r"family nodeflow does not run \(nodeflow runs SD1\.x, SD2\.x and SDXL\)$"):
        load_checkpoint(tmp_path / "sd3.safetensors")
    save_file({"double_blocks.0.img_attn.norm.key_norm.scale": torch.empty(2)}, str(tmp_path / "flux.safetensors"))
    with pytest.raises(ModelFileError, match=r"flux\.safetensors: this is a FLUX\.1 model"):
        load_checkpoint(tmp_path / "flux.safetensors")


def test_wrong_loader_and_unknown_files_are_explained(tmp_path):
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1)}, str(tmp_path / "style.safetensors"))
    with pytest.raises(ModelFileError, match=r"style\.safetensors: this is a LoRA \(use LoraLoader\)"):
        load_checkpoint(tmp_path / "style.safetensors")
    save_file({"lm_head.weight": torch.zeros(2), "model.embed_tokens.weight": torch.zeros(2)}, str(tmp_path / "llm.safetensors"))
    with pytest.raises(ModelFileError, match=r"llm\.safetensors: not a Stable Diffusion checkpoint; "
                                             r"found keys like lm_head\.weight, model\.embed_tokens\.weight"):
        load_checkpoint(tmp_path / "llm.safetensors")
    with pytest.raises(ModelFileError, match=r"llm\.safetensors: not a VAE; found keys like lm_head"):
        load_vae(tmp_path / "llm.safetensors")


def test_device_and_dtype_rule():
    from nodeflow.runtime.devices import model_dtype, resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else resolve_device("auto").type)
    assert all(model_dtype("cpu", "auto", part) == torch.float32 for part in ("unet", "text", "vae"))
    assert model_dtype("cpu", "bf16", "vae") == torch.bfloat16 and model_dtype("cuda", "fp32", "unet") == torch.float32
    assert model_dtype("cuda", "auto", "unet") == torch.float16 and model_dtype("mps", "auto", "vae") == torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        model_dtype("cpu", "fp8")
    with pytest.raises(ValueError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            resolve_device("cuda")
