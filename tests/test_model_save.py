"""Saving models (issue 16): CheckpointSave, ModelSave, CLIPSave and VAESave write original-layout
single-file .safetensors that nodeflow's loaders read back: a merged model saved and reloaded gives
the in-memory merged model's image; the keys are those of the tiny checkpoints the test factories
wrote (each family's original layout, written test-side); files are never overwritten and never
left half-written.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from nodeflow.engine.context import RunContext
from nodeflow.engine.provenance import Provenance
from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import NodeInstance, Workflow
from nodeflow.errors import NodeInputError
from nodeflow.loading.checkpoint import load_checkpoint
from nodeflow.loading.save_checkpoint import LazyTensor, SaveError, save_new_file, write_safetensors
from nodeflow.runtime.paths import Paths
from nodeflow_nodes.loaders import checkpoint_loader_simple, clip_loader, dual_clip_loader, unet_loader, vae_loader
from nodeflow_nodes.model_merging import clip_merge_simple, model_merge_simple
from nodeflow_nodes.model_save import _validate_prefix, checkpoint_save, clip_save, model_save, vae_save
from tests.family_files import write_family_checkpoint
from tests.test_model_merging import sample_image, sd1_pair, sdxl_pair, unet_output  # noqa: F401 (fixtures)


@pytest.fixture
def ctx(tmp_path):
    """Saves go to out/; the loaders read models from out/ too (its checkpoints/, vae/ ... folders)."""
    workflow = Workflow({"9": NodeInstance("9", "CheckpointSave", {"filename_prefix": "checkpoints/ComfyUI"})})
    paths = Paths(output_dir=tmp_path / "out", models_dirs=(tmp_path / "out",), temp_dir=tmp_path / "tmp",
                  assets_dir=tmp_path / "no-assets")
    return RunContext(paths=paths, provenance=Provenance.of(workflow, Registry.load(), paths))


def saved_name(path: str, kind: str) -> str:
    return path.split(f"/{kind}/", 1)[1]


@pytest.mark.parametrize("pair", ["sd1_pair", "sdxl_pair"])
def test_a_saved_merge_reloads_and_gives_the_same_image(pair, ctx, request):
    a, b, _ = request.getfixturevalue(pair)
    model, = model_merge_simple(a.model, b.model, 0.4)
    clip, = clip_merge_simple(a.clip, b.clip, 0.4)
    in_memory = sample_image(model, clip, a.vae)
    [path] = checkpoint_save(model, clip, a.vae, "checkpoints/ComfyUI", ctx)["files"]
    assert path.endswith("/out/checkpoints/ComfyUI_00001_.safetensors")
    loaded = checkpoint_loader_simple(saved_name(path, "checkpoints"), ctx)
    from_file = sample_image(*loaded)
    assert (from_file - in_memory).abs().max() < 1e-5
    assert not torch.allclose(from_file, sample_image(a.model, a.clip, a.vae), atol=1e-3)  # the merge was saved
    assert not torch.allclose(from_file, sample_image(b.model, b.clip, b.vae), atol=1e-3)


FAMILIES = ["sd1", "sd2", "sdxl", "sdxl-refiner"]


def family_file(tmp_path, family: str, seed: int = 0):
    if family == "sd1":
        from tests.factories import write_tiny_checkpoint

        return write_tiny_checkpoint(tmp_path / "source.safetensors", seed=seed)
    return write_family_checkpoint(tmp_path / "source.safetensors", family, seed=seed)[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_keys_are_the_original_layout_and_values_round_trip(family, ctx, tmp_path):
    """An unmerged checkpoint saved again holds the same keys, shapes and values as the file the
    test factories wrote (OpenCLIP towers fused and transposed back; ComfyUI's logit_scale)."""
    source = family_file(tmp_path, family)
    checkpoint = load_checkpoint(source)
    [path] = checkpoint_save(checkpoint.model, checkpoint.clip, checkpoint.vae, f"checkpoints/{family}", ctx)["files"]
    original, saved = load_file(str(source)), load_file(path)
    assert saved.keys() == original.keys()
    differ = [k for k in original if saved[k].shape != original[k].shape
              or not (k.endswith("logit_scale") or torch.equal(saved[k].to(original[k].dtype), original[k]))]
    assert differ == []
    if family == "sdxl":
        assert saved["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"].dtype == torch.int64


def test_metadata_has_modelspec_and_the_workflow(sdxl_pair, ctx):
    a, _, _ = sdxl_pair
    [path] = checkpoint_save(a.model, a.clip, a.vae, "checkpoints/xl", ctx)["files"]
    metadata = safe_open(path, "pt").metadata()
    assert metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base"
    assert metadata["modelspec.title"] == "xl 1" and metadata["modelspec.predict_key"] == "epsilon"
    assert metadata["modelspec.implementation"] == "sgm" and metadata["modelspec.sai_model_spec"] == "1.0.0"
    assert json.loads(metadata["prompt"])["9"]["class_type"] == "CheckpointSave"
    assert json.loads(metadata["workflow"])["nodes"][0]["type"] == "CheckpointSave"
    assert json.loads(metadata["nodeflow"])["nodes"]["9"]["type"] == "CheckpointSave"


def test_v_prediction_is_marked_and_reloads_as_v(ctx, tmp_path):
    path, _ = write_family_checkpoint(tmp_path / "v.safetensors", "sd2", markers=("v_pred",))
    checkpoint = load_checkpoint(path)
    assert checkpoint.model.sampling.parameterization == "v"
    [saved] = model_save(checkpoint.model, "diffusion_models/v", ctx)["files"]
    assert "v_pred" in load_file(saved) and safe_open(saved, "pt").metadata()["modelspec.predict_key"] == "v"
    model, = unet_loader(saved_name(saved, "diffusion_models"), "default", ctx)
    assert model.sampling.parameterization == "v" and model.family == "SD2.x"


def test_model_clip_and_vae_files_load_through_their_loaders(sd1_pair, sdxl_pair, ctx):
    a, b, _ = sd1_pair
    model, = model_merge_simple(a.model, b.model, 0.7)
    clip, = clip_merge_simple(a.clip, b.clip, 0.7)
    [unet_file] = model_save(model, "diffusion_models/ComfyUI", ctx)["files"]
    assert set(load_file(unet_file)) == {"model.diffusion_model." + k for k, _ in a.model.unet.named_parameters()}
    loaded_model, = unet_loader(saved_name(unet_file, "diffusion_models"), "default", ctx)
    assert torch.allclose(unet_output(loaded_model.unet), unet_output(model.unet), atol=1e-5)
    assert not torch.allclose(unet_output(loaded_model.unet), unet_output(a.model.unet), atol=1e-3)

    [clip_file] = clip_save(clip, "clip/ComfyUI", ctx)["files"]
    assert clip_file.endswith("/clip/ComfyUI_clip_l_00001_.safetensors")
    loaded_clip, = clip_loader(saved_name(clip_file, "clip"), "stable_diffusion", ctx)
    assert torch.allclose(loaded_clip.encode("a cat")[0], clip.encode("a cat")[0], atol=1e-5)

    [vae_file] = vae_save(b.vae, "vae/ComfyUI_vae", ctx)["files"]
    assert not any(k.startswith("first_stage_model.") for k in load_file(vae_file))
    loaded_vae, = vae_loader(saved_name(vae_file, "vae"), ctx)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded_vae.decode(latent), b.vae.decode(latent))

    xa, xb, _ = sdxl_pair
    xl_clip, = clip_merge_simple(xa.clip, xb.clip, 0.5)
    files = clip_save(xl_clip, "clip/xl", ctx)["files"]
    assert [f.rsplit("/", 1)[1] for f in files] == ["xl_clip_l_00001_.safetensors", "xl_clip_g_00001_.safetensors"]
    both, = dual_clip_loader(*(saved_name(f, "clip") for f in reversed(files)), "sdxl", ctx)
    for got, want in zip(both.encode("a cat"), xl_clip.encode("a cat")):
        assert torch.allclose(got, want, atol=1e-5)


def test_files_are_numbered_and_never_overwritten(sd1_pair, ctx, tmp_path, monkeypatch):
    a, _, _ = sd1_pair
    folder = tmp_path / "out" / "vae"
    first = vae_save(a.vae, "vae/keep", ctx)["files"][0]
    second = vae_save(a.vae, "vae/keep", ctx)["files"][0]
    assert [first, second] == [str(folder / "keep_00001_.safetensors"), str(folder / "keep_00002_.safetensors")]
    (folder / "keep_00007_.safetensors").write_bytes(b"someone else's file")
    assert vae_save(a.vae, "vae/keep", ctx)["files"][0] == str(folder / "keep_00008_.safetensors")
    # a name taken after the counter was read (another process) is skipped, not replaced
    import nodeflow.loading.save_checkpoint as saving

    monkeypatch.setattr(saving, "next_counter", lambda folder, name: 7)
    assert vae_save(a.vae, "vae/keep", ctx)["files"][0] == str(folder / "keep_00009_.safetensors")
    assert (folder / "keep_00007_.safetensors").read_bytes() == b"someone else's file"
    assert sorted(p.name for p in folder.iterdir()) == [f"keep_0000{i}_.safetensors" for i in (1, 2, 7, 8, 9)]


def test_a_failed_save_leaves_no_file(tmp_path):
    def broken():
        raise RuntimeError("out of memory while merging")

    tensors = {"a": LazyTensor((2,), torch.float32, lambda: torch.ones(2)),
               "b": LazyTensor((3,), torch.float32, broken)}
    with pytest.raises(RuntimeError, match="out of memory"):
        save_new_file(tmp_path, "half", tensors)
    assert list(tmp_path.iterdir()) == []
    wrong = {"a": LazyTensor((2,), torch.float32, lambda: torch.ones(3))}  # a value not as declared
    with pytest.raises(SaveError):
        save_new_file(tmp_path, "half", wrong)
    assert list(tmp_path.iterdir()) == []


def test_the_streamed_format_is_what_safetensors_reads(tmp_path):
    values = {"f16": torch.randn(3, 5).half(), "bf16": torch.randn(4).bfloat16(), "i64": torch.arange(77)[None],
              "scalar": torch.tensor(4.6055), "empty": torch.tensor([]), "flag": torch.tensor([True, False]),
              "f32": torch.randn(2, 3, 1, 1), "odd": torch.randint(0, 255, (7,), dtype=torch.uint8)}
    path = tmp_path / "x.safetensors"
    with open(path, "wb") as file:
        write_safetensors(file, {k: LazyTensor(tuple(v.shape), v.dtype, lambda v=v: v) for k, v in values.items()},
                          {"prompt": "{\"ü\": 1}"})
    read = load_file(str(path))
    assert read.keys() == values.keys()
    assert all(read[k].dtype == v.dtype and torch.equal(read[k], v) for k, v in values.items())
    assert safe_open(str(path), "pt").metadata() == {"prompt": "{\"ü\": 1}"}


@pytest.mark.parametrize("prefix", ["../outside", "/tmp/abs", "checkpoints/../../x", ".hidden"])
def test_prefixes_leaving_the_output_folder_are_refused(prefix, sd1_pair, ctx, tmp_path):
    a, _, _ = sd1_pair
    with pytest.raises(ValueError):
        _validate_prefix(prefix)
    with pytest.raises(NodeInputError):
        vae_save(a.vae, prefix, ctx)
    assert not (tmp_path / "outside").exists() and not (tmp_path / "x").exists()


def test_a_symlink_out_of_the_output_folder_is_refused(sd1_pair, ctx, tmp_path):
    a, _, _ = sd1_pair
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NodeInputError):
        vae_save(a.vae, "link/vae", ctx)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_clip_of_another_family_is_refused(sd1_pair, sdxl_pair, ctx, tmp_path):
    a, _, _ = sd1_pair
    xa, _, _ = sdxl_pair
    with pytest.raises(NodeInputError, match="clip_g and clip_l.*clip_l"):
        checkpoint_save(a.model, xa.clip, a.vae, "checkpoints/mixed", ctx)
    assert not (tmp_path / "out" / "checkpoints").exists() or not list((tmp_path / "out" / "checkpoints").iterdir())


def test_the_executor_runs_merge_and_save_nodes_from_a_comfyui_workflow(sd1_pair, tmp_path):
    """ComfyUI's own API format, block inputs named with dots, run end to end."""
    from nodeflow.engine.executor import Executor
    from nodeflow.formats.comfy import from_comfy_api
    from nodeflow_nodes.model_merging import SD1_BLOCKS

    _, _, root = sd1_pair
    paths = Paths(models_dirs=(root / "models",), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                  assets_dir=tmp_path / "no-assets")
    registry = Registry.load(paths)
    api = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
           "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "b.safetensors"}},
           "3": {"class_type": "ModelMergeSD1", "inputs": {"model1": ["1", 0], "model2": ["2", 0],
                                                          **{name: 0.5 for name in SD1_BLOCKS}}},
           "4": {"class_type": "CheckpointSave", "inputs": {"model": ["3", 0], "clip": ["1", 1], "vae": ["1", 2],
                                                            "filename_prefix": "checkpoints/ComfyUI"}}}
    result = Executor(registry, paths).run(from_comfy_api(api, registry))
    [path] = result.outputs["4"][0]["files"]
    saved = load_file(path)
    a, b, _ = sd1_pair
    key = "input_blocks.1.1.proj_in.weight"
    expected = 0.5 * a.model.unet.get_parameter(key) + 0.5 * b.model.unet.get_parameter(key)
    assert torch.allclose(saved["model.diffusion_model." + key], expected, atol=1e-6)
    assert json.loads(safe_open(path, "pt").metadata()["prompt"])["3"]["class_type"] == "ModelMergeSD1"


def test_the_embedded_model_keeps_what_only_its_metadata_tells(ctx):
    """Heads, latent scale and preview factors that shapes cannot tell are written as nodeflow's
    metadata (the loader reads them), so the saved file samples the same image."""
    from tests.project import ROOT

    source = ROOT / "assets" / "nodeflow-tiny.safetensors"
    checkpoint = load_checkpoint(source)
    [path] = checkpoint_save(checkpoint.model, checkpoint.clip, checkpoint.vae, "checkpoints/tiny", ctx)["files"]
    theirs, ours = safe_open(str(source), "pt").metadata(), safe_open(path, "pt").metadata()
    for key in ("nodeflow.unet.num_heads", "nodeflow.vae.scaling_factor", "nodeflow.latent_rgb"):
        assert json.loads(ours[key]) == json.loads(theirs[key])
    reloaded = load_checkpoint(path)
    assert reloaded.model.unet.config == checkpoint.model.unet.config
    assert torch.equal(sample_image(reloaded.model, reloaded.clip, reloaded.vae),
                       sample_image(checkpoint.model, checkpoint.clip, checkpoint.vae))
