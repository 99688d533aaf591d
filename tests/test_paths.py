"""Model folders: our layout, A1111/ComfyUI aliases, embedded assets, safe name resolution."""

import pytest

from nodeflow.errors import ModelFileError
from nodeflow.runtime.paths import Paths


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def folders(tmp_path):
    ours, a1111, assets = tmp_path / "models", tmp_path / "webui" / "models", tmp_path / "assets"
    touch(ours / "checkpoints" / "mine.safetensors")
    touch(ours / "checkpoints" / "sd15" / "deep.ckpt")
    touch(ours / "checkpoints" / "notes.txt")
    touch(a1111 / "Stable-diffusion" / "webui.safetensors")
    touch(a1111 / "Lora" / "style.safetensors")
    touch(a1111 / "VAE" / "vae.pt")
    touch(a1111 / "ControlNet" / "canny.pth")
    touch(assets / "tiny.safetensors")
    touch(assets / "clip_tokenizer" / "vocab.safetensors")  # not a model: only top-level files
    touch(assets / "controlnet" / "tiny_canny.safetensors")
    return Paths(models_dirs=(ours, a1111), assets_dir=assets)


def test_models_are_listed_from_every_root_alias_and_assets(folders):
    assert folders.list_models("checkpoints") == [
        "mine.safetensors", "sd15/deep.ckpt", "tiny.safetensors", "webui.safetensors"]
    assert folders.list_models("loras") == ["style.safetensors"]
    assert folders.list_models("vae") == ["vae.pt"]
    assert folders.list_models("controlnet") == ["canny.pth", "tiny_canny.safetensors"]
    assert folders.list_models("embeddings") == []


def test_resolve_finds_files_in_their_folder(folders):
    assert folders.resolve_model("checkpoints", "sd15/deep.ckpt").name == "deep.ckpt"
    assert folders.resolve_model("checkpoints", "sd15\\deep.ckpt").name == "deep.ckpt"  # Windows names
    assert folders.resolve_model("checkpoints", "tiny.safetensors").parent == folders.assets_dir
    assert folders.resolve_model("loras", "style.safetensors").parent.name == "Lora"


@pytest.mark.parametrize("name", ["../checkpoints/mine.safetensors", "/etc/passwd", "sd15/../../x",
                                  "clip_tokenizer/vocab.safetensors", ""])
def test_resolve_refuses_names_outside_the_folders(folders, name):
    with pytest.raises(ModelFileError):
        folders.resolve_model("checkpoints", name)


def test_unknown_name_lists_what_exists(folders):
    with pytest.raises(ModelFileError) as caught:
        folders.resolve_model("loras", "nope.safetensors")
    assert "'nope.safetensors' not found" in str(caught.value) and "style.safetensors" in str(caught.value)


def test_unknown_kind_is_refused(folders):
    with pytest.raises(ValueError, match="unknown model kind 'upscalers'"):
        folders.list_models("upscalers")


def test_roots_from_arguments_then_environment_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("NODEFLOW_MODELS_DIR", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv("NODEFLOW_CUSTOM_NODES", str(tmp_path / "custom"))
    from_env = Paths.from_environment()
    assert from_env.models_dirs == (tmp_path / "a", tmp_path / "b")
    assert from_env.custom_nodes_dir == tmp_path / "custom"
    assert Paths.from_environment([str(tmp_path / "c")]).models_dirs == (tmp_path / "c",)
    monkeypatch.delenv("NODEFLOW_MODELS_DIR")
    assert [p.name for p in Paths.from_environment().models_dirs] == ["models"]


def test_diffusers_folders_are_listed_and_resolved_by_name_without_their_part_files(tmp_path):
    from nodeflow.runtime.paths import Paths

    root = tmp_path / "models"
    pipeline = root / "checkpoints" / "sd15-diffusers"
    for part in ("unet", "vae", "text_encoder"):
        (pipeline / part).mkdir(parents=True)
        (pipeline / part / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    (pipeline / "model_index.json").write_text("{}")
    (root / "checkpoints" / "single.safetensors").write_bytes(b"x")
    vae = root / "vae" / "ft-mse"
    vae.mkdir(parents=True)
    (vae / "config.json").write_text("{}")
    (vae / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    (root / "vae" / "not-a-model").mkdir()
    (root / "checkpoints" / "loop").symlink_to(root / "checkpoints")  # a symlink loop is walked once
    paths = Paths(models_dirs=(root,), assets_dir=tmp_path / "no-assets")
    listed = paths.list_models("checkpoints")
    assert "sd15-diffusers" in listed and "single.safetensors" in listed
    assert not any("diffusion_pytorch_model" in name for name in listed)
    assert paths.resolve_model("checkpoints", "sd15-diffusers") == pipeline
    assert paths.list_models("vae") == ["ft-mse"]
    assert paths.resolve_model("vae", "ft-mse") == vae
    import pytest

    from nodeflow.errors import ModelFileError
    with pytest.raises(ModelFileError, match="not found"):
        paths.resolve_model("vae", "not-a-model")
