"""A checkpoint's native image size from its header (nodeflow.loading.native_size), and what the
editor does with it (nodeflow.gui.native_size), without a display."""

import json

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.engine.registry import Registry
from nodeflow.errors import ModelFileError
from nodeflow.formats import load_workflow
from nodeflow.gui.document import Document
from nodeflow.gui.native_size import NativeSizes, size_label
from nodeflow.loading.detect import SD2_V_KEY, detect_kind
from nodeflow.loading.files import read_state_dict
from nodeflow.loading.native_size import native_size, size_from_metadata
from nodeflow.runtime.paths import Paths
from tests.factories import write_tiny_checkpoint
from tests.family_files import family_state_dict, write_family_checkpoint
from tests.project import ROOT

ASSETS = ROOT / "assets"


# ----- the loading layer: header only ----------------------------------------------------------

@pytest.mark.parametrize("name", ["nodeflow-tiny.safetensors", "nodeflow-tiny-xl.safetensors"])
def test_embedded_models_are_64_px(name):
    assert native_size(ASSETS / name) == (64, 64)


@pytest.mark.parametrize("family, markers, expected", [
    ("sdxl", (), 1024), ("sdxl-refiner", (), 1024), ("sd2", ("v_pred",), 768)])
def test_family_sizes_from_the_header_alone(tmp_path, family, markers, expected):
    path, _ = write_family_checkpoint(tmp_path / f"{family}.safetensors", family, markers=markers)
    assert native_size(path) == (expected, expected)


def test_sd1_file_without_metadata_is_512(tmp_path):
    assert native_size(write_tiny_checkpoint(tmp_path / "sd1.safetensors")) == (512, 512)


def test_sd2_v_guess_reads_its_tensor_from_the_file(tmp_path):
    """ComfyUI's SD2 768-v guess needs one tensor's spread: it is read from the file, and the
    header-only answer agrees with detect_kind on every tensor (768 when spread, else 512)."""
    sd, _ = family_state_dict("sd2")
    for spread, expected in ((0.0, 512), (1.0, 768)):
        path = tmp_path / f"sd2_{spread}.safetensors"
        save_file({**sd, SD2_V_KEY: torch.linspace(-spread, spread, 64)}, str(path))
        kind = detect_kind(read_state_dict(path)[0])
        assert kind == {512: "sd2", 768: "sd2-v"}[expected]
        assert native_size(path) == (expected, expected)


def test_metadata_says_first(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "told.safetensors", metadata={"modelspec.resolution": "768x512"})
    assert native_size(path) == (768, 512)
    assert size_from_metadata({"nodeflow.training": json.dumps({"resolution": 128})}) == (128, 128)
    assert size_from_metadata({"nodeflow.training": "{}"}) == (64, 64)  # nodeflow's trainer: 64 px
    assert size_from_metadata({"modelspec.resolution": "big"}) is None
    assert size_from_metadata({}) is None


def test_files_that_do_not_tell(tmp_path):
    vae = tmp_path / "vae.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(1), "decoder.conv_out.weight": torch.zeros(1)}, str(vae))
    assert native_size(vae) is None  # not a diffusion model
    pickled = tmp_path / "old.ckpt"
    pickled.write_bytes(b"not read")
    assert native_size(pickled) is None  # a pickle cannot be read without unpickling it
    folder = tmp_path / "diffusers" / "unet"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"sample_size": 96}))
    assert native_size(folder.parent) == (768, 768)


def test_corrupt_file_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelFileError, match="bad.safetensors"):
        native_size(bad)


# ----- the editor: the graph's loaders ---------------------------------------------------------

@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def paths_with(tmp_path, **files):
    """Paths whose checkpoints folder holds ``files`` (name -> writer), and the project's assets."""
    for name, write in files.items():
        write(tmp_path / "models" / "checkpoints" / name)
    return Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp")


def test_txt2img_tells_the_embedded_models_size(registry, tmp_path):
    workflow = load_workflow(ROOT / "workflows" / "txt2img.json", registry)
    sizes = NativeSizes(native_size, paths_with(tmp_path))
    assert sizes.in_graph(workflow, registry) == [(64, 64)]
    assert sizes.new_node_values(workflow, registry, "EmptyLatentImage") == {"width": 64, "height": 64}
    assert sizes.new_node_values(workflow, registry, "LatentUpscale") == {}
    assert size_label((64, 64)) == "Model's size: 64 x 64"


def test_a_new_empty_latent_keeps_512_unless_one_size_is_told(registry, tmp_path):
    paths = paths_with(tmp_path, **{"sd1.safetensors": write_tiny_checkpoint})
    document = Document(registry)
    sizes = NativeSizes(native_size, paths)
    assert sizes.new_node_values(document.workflow, registry, "EmptyLatentImage") == {}  # no loader
    first = document.add_node("CheckpointLoaderSimple", values={"ckpt_name": "nodeflow-tiny.safetensors"})
    assert sizes.new_node_values(document.workflow, registry, "EmptyLatentImage") == {"width": 64, "height": 64}
    document.add_node("CheckpointLoaderSimple", values={"ckpt_name": "sd1.safetensors"})
    assert sizes.in_graph(document.workflow, registry) == [(64, 64), (512, 512)]
    assert sizes.new_node_values(document.workflow, registry, "EmptyLatentImage") == {}  # two: ComfyUI's 512
    document.set_value(first, "ckpt_name", "missing.safetensors")  # a file not there tells nothing
    assert sizes.in_graph(document.workflow, registry) == [(512, 512)]
    assert NativeSizes(None, paths).in_graph(document.workflow, registry) == []  # no reader given


def test_each_file_is_read_once_while_unchanged(registry, tmp_path):
    paths = paths_with(tmp_path, **{"sd1.safetensors": write_tiny_checkpoint})
    reads = []
    sizes = NativeSizes(lambda path: reads.append(path) or native_size(path), paths)
    document = Document(registry)
    document.add_node("CheckpointLoaderSimple", values={"ckpt_name": "sd1.safetensors"})
    for _ in range(3):
        assert sizes.in_graph(document.workflow, registry) == [(512, 512)]
    assert len(reads) == 1
    write_tiny_checkpoint(tmp_path / "models" / "checkpoints" / "sd1.safetensors",
                          metadata={"modelspec.resolution": "640x640"})  # replaced: read again
    assert sizes.in_graph(document.workflow, registry) == [(640, 640)] and len(reads) == 2


def test_an_unreadable_file_means_unknown(registry, tmp_path):
    def corrupt(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"junk")

    paths = paths_with(tmp_path, **{"bad.safetensors": corrupt})
    document = Document(registry)
    document.add_node("CheckpointLoaderSimple", values={"ckpt_name": "bad.safetensors"})
    assert NativeSizes(native_size, paths).in_graph(document.workflow, registry) == []


def test_set_values_is_one_undo_step(registry):
    document = Document(registry)
    latent = document.add_node("EmptyLatentImage")
    structure = document.structure
    document.set_values(latent, {"width": 64, "height": 64}, label="set the model's size")
    assert document.workflow.nodes[latent].inputs["width"] == document.workflow.nodes[latent].inputs["height"] == 64
    assert document.structure > structure  # the canvas rebuilds to show both values
    assert document.undo() == "set the model's size"
    assert document.workflow.nodes[latent].inputs["width"] == document.workflow.nodes[latent].inputs["height"] == 512
