"""Checkpoint files: strict loading, detection, safety, clear errors naming the file."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import ModelFileError
from nodeflow.models.detect import detect_kind
from nodeflow.models.files import read_state_dict
from nodeflow.models.loader import load_checkpoint, load_vae
from tests.factories import tiny_state_dict, write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny.safetensors")


def test_round_trip_loads_all_three_models(checkpoint_path):
    checkpoint = load_checkpoint(checkpoint_path)
    assert checkpoint.kind == "sd1"
    sd = tiny_state_dict()
    weight = checkpoint.model.unet.input_blocks[0][0].weight
    assert torch.equal(weight, sd["model.diffusion_model.input_blocks.0.0.weight"].float())
    cond, pooled = checkpoint.clip.encode("a red circle")
    assert cond.shape == (1, 77, 32)
    image = checkpoint.vae.decode(torch.zeros(1, 4, 4, 4))
    assert image.shape == (1, 32, 32, 3) and 0 <= float(image.min()) and float(image.max()) <= 1


def test_detection():
    assert detect_kind(tiny_state_dict()) == "sd1"
    assert detect_kind(tiny_state_dict(inpainting=True)) == "sd1-inpaint"
    vae_only = {k: v for k, v in tiny_state_dict().items() if k.startswith("first_stage_model.")}
    assert detect_kind(vae_only) == "vae"
    assert detect_kind({"foo.weight": torch.zeros(1)}) == "unknown"


def test_inpainting_checkpoint_loads(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "inpaint.safetensors", inpainting=True)
    checkpoint = load_checkpoint(path)
    assert checkpoint.kind == "sd1-inpaint" and checkpoint.model.in_channels == 9


def test_unexpected_and_missing_keys_are_listed(tmp_path):
    sd = tiny_state_dict()
    sd["something.else"] = torch.zeros(1)
    save_file(sd, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ModelFileError, match="extra.safetensors: unexpected keys: something.else"):
        load_checkpoint(tmp_path / "extra.safetensors")
    sd = tiny_state_dict()
    del sd["model.diffusion_model.out.2.bias"]
    save_file(sd, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelFileError, match="missing.safetensors.*U-Net.*out.2.bias"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_known_extras_are_ignored(tmp_path):
    sd = tiny_state_dict()
    sd["model_ema.decay"] = torch.tensor(0.999)
    sd["alphas_cumprod"] = torch.zeros(1000)
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_file(sd, str(tmp_path / "extras.safetensors"))
    assert load_checkpoint(tmp_path / "extras.safetensors").kind == "sd1"


def test_keys_without_text_model_segment(tmp_path):
    sd = {k.replace("transformer.text_model.", "transformer."): v for k, v in tiny_state_dict().items()}
    save_file(sd, str(tmp_path / "old.safetensors"))
    assert load_checkpoint(tmp_path / "old.safetensors").clip.encode("x")[0].shape == (1, 77, 32)


def test_truncated_file_names_the_file(tmp_path, checkpoint_path):
    data = checkpoint_path.read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="broken.safetensors: truncated"):
        load_checkpoint(broken)
    (tmp_path / "garbage.safetensors").write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="garbage.safetensors"):
        load_checkpoint(tmp_path / "garbage.safetensors")


def test_unknown_file_is_explained(tmp_path):
    save_file({"foo.weight": torch.zeros(2)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(ModelFileError, match="not a Stable Diffusion 1.x checkpoint; found keys like foo.weight"):
        load_checkpoint(tmp_path / "odd.safetensors")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_needing_code_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": Evil()}}, path)
    with pytest.raises(ModelFileError, match="evil.ckpt: refused"):
        read_state_dict(path)
    assert "must never run" not in capsys.readouterr().out


def test_plain_tensor_pickles_load(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": tiny_state_dict()}, path)
    sd, _ = read_state_dict(path)
    assert detect_kind(sd) == "sd1"
    assert pickle  # pickles are read only through torch.load(weights_only=True)


def test_standalone_vae_with_and_without_prefix(tmp_path):
    vae_sd = {k: v for k, v in tiny_state_dict().items() if k.startswith("first_stage_model.")}
    save_file(vae_sd, str(tmp_path / "a.safetensors"))
    save_file({k.removeprefix("first_stage_model."): v for k, v in vae_sd.items()}, str(tmp_path / "b.safetensors"))
    a, b = load_vae(tmp_path / "a.safetensors"), load_vae(tmp_path / "b.safetensors")
    z = torch.randn(1, 4, 2, 2)
    assert torch.equal(a.decode(z), b.decode(z))
    with pytest.raises(ModelFileError, match="this is an SD1.x checkpoint"):
        load_vae(write_tiny_checkpoint(tmp_path / "full.safetensors"))


def test_scaling_factor_and_heads_from_metadata(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "meta.safetensors",
                                 metadata={"nodeflow.vae.scaling_factor": "0.5", "nodeflow.unet.num_heads": "4"})
    checkpoint = load_checkpoint(path)
    assert checkpoint.model.latent_format.scale_factor == 0.5 and checkpoint.vae.scaling_factor == 0.5
    assert checkpoint.model.unet.config.num_heads == 4
