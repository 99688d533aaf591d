"""SaveLatent and LoadLatent: ComfyUI's .latent format (safetensors keys, version marker, legacy
scaling, workflow metadata), names that never overwrite, the input-folder list and content
fingerprint, refused files (no latent tensor, pickles never unpickled) and a run through the executor."""

import json
import pickle
import threading

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nodeflow.engine.context import RunContext
from nodeflow.engine.executor import Executor
from nodeflow.engine.provenance import Provenance
from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import Link, NodeInstance, Workflow
from nodeflow.errors import ModelFileError, NodeInputError, ValidationError
from nodeflow.runtime.paths import Paths
from nodeflow.spec import spec_of
from nodeflow_nodes.latent_files import load_latent, save_latent


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "in").mkdir()
    return Paths(input_dir=tmp_path / "in", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp")


@pytest.fixture
def ctx(paths):
    workflow = Workflow({"5": NodeInstance("5", "EmptyLatentImage", {"width": 64, "height": 32, "batch_size": 2}),
                         "9": NodeInstance("9", "SaveLatent", {"filename_prefix": "latents/ComfyUI"})},
                        [Link("5", 0, "9", "samples")])
    return RunContext(paths=paths, provenance=Provenance.of(workflow, Registry.load(entry_point_packs=False), paths))


def samples(b=2, seed=0):
    return torch.randn(b, 4, 3, 5, generator=torch.Generator().manual_seed(seed))


def test_saved_file_has_comfyuis_keys_marker_and_metadata(ctx, paths):
    x = samples()
    saved = save_latent({"samples": x, "batch_index": [3, 4]}, "latents/ComfyUI", ctx)["latents"]
    assert saved == [str(paths.output_dir / "latents" / "ComfyUI_00001_.latent")]
    with safe_open(saved[0], framework="pt") as file:
        assert set(file.keys()) == {"latent_tensor", "latent_format_version_0"}
        assert torch.equal(file.get_tensor("latent_tensor"), x)
        assert file.get_tensor("latent_format_version_0").shape == (0,)
        metadata = file.metadata()
    prompt = json.loads(metadata["prompt"])  # ComfyUI's API format, as ComfyUI's SaveLatent stores it
    assert prompt["9"]["class_type"] == "SaveLatent" and prompt["9"]["inputs"]["samples"] == ["5", 0]
    assert json.loads(metadata["nodeflow"])["nodes"]["5"]["type"] == "EmptyLatentImage"


def test_names_count_up_and_never_overwrite(ctx, paths):
    folder = paths.output_dir / "latents"
    folder.mkdir(parents=True)
    (folder / "ComfyUI_00003_.latent").write_bytes(b"keep me")
    (folder / "ComfyUI_00007_.png").write_bytes(b"an image's counter is not a latent's")
    first = save_latent({"samples": samples()}, "latents/ComfyUI", ctx)["latents"][0]
    second = save_latent({"samples": samples()}, "latents/ComfyUI", ctx)["latents"][0]
    assert (first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]) == ("ComfyUI_00004_.latent", "ComfyUI_00005_.latent")
    assert (folder / "ComfyUI_00003_.latent").read_bytes() == b"keep me"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_concurrent_saves_never_collide(ctx):
    results, errors = [], []

    def worker():
        try:
            for _ in range(3):
                results.extend(save_latent({"samples": samples()}, "same", ctx)["latents"])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 12 and len(set(results)) == 12


def test_prefix_cannot_leave_the_output_folder(ctx):
    problem = spec_of(save_latent).input("filename_prefix").check_value("../escape")
    assert problem and "'..'" in problem
    with pytest.raises(NodeInputError, match="'filename_prefix'.*relative"):
        save_latent({"samples": samples()}, "/abs/latent", ctx)


def test_round_trip_through_the_input_folder(ctx, paths):
    x = samples(seed=1).half()  # stored as fp16, read back as float32 (ComfyUI's .float())
    saved = save_latent({"samples": x}, "rt", ctx)["latents"][0]
    (paths.input_dir / "sub").mkdir()
    target = paths.input_dir / "sub" / "rt.latent"
    target.write_bytes(open(saved, "rb").read())
    (loaded,) = load_latent("sub/rt.latent", ctx)
    assert loaded["samples"].dtype == torch.float32 and torch.equal(loaded["samples"], x.float())
    assert set(loaded) == {"samples"}  # ComfyUI's files hold the samples only


def test_files_without_the_marker_are_scaled_like_comfyuis_old_format(ctx, paths):
    x = samples()
    save_file({"latent_tensor": x}, str(paths.input_dir / "old.latent"))
    (loaded,) = load_latent("old.latent", ctx)
    assert torch.allclose(loaded["samples"], x / 0.18215)


def test_list_holds_latent_files_and_the_fingerprint_follows_the_content(paths):
    spec = spec_of(load_latent)
    marker = {"latent_format_version_0": torch.tensor([])}
    save_file({"latent_tensor": samples(), **marker}, str(paths.input_dir / "a.latent"))
    (paths.input_dir / "b.latent").write_bytes((paths.input_dir / "a.latent").read_bytes())
    (paths.input_dir / "picture.png").write_bytes(b"not a latent")
    assert spec.input("latent").choices(paths) == ["a.latent", "b.latent"]
    first = spec.fingerprint({"latent": "a.latent"}, paths)
    assert spec.fingerprint({"latent": "b.latent"}, paths) == first  # same content, same signature
    save_file({"latent_tensor": samples(seed=5), "latent_format_version_0": torch.tensor([])},
              str(paths.input_dir / "a.latent"))
    assert spec.fingerprint({"latent": "a.latent"}, paths) != first


def test_a_safetensors_file_without_latent_tensor_is_refused(ctx, paths):
    save_file({"weight": torch.zeros(2)}, str(paths.input_dir / "model.latent"))
    with pytest.raises(NodeInputError, match="'latent'.*latent_tensor"):
        load_latent("model.latent", ctx)


class _Payload:
    """Unpickling this would create a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_named_latent_is_never_unpickled(ctx, paths, tmp_path):
    marker = tmp_path / "unpickled"
    (paths.input_dir / "evil.latent").write_bytes(pickle.dumps({"latent_tensor": _Payload(str(marker))}))
    with pytest.raises(ModelFileError):
        load_latent("evil.latent", ctx)
    assert not marker.exists()


def test_save_then_load_through_the_executor(paths):
    registry = Registry.load(entry_point_packs=False)
    executor = Executor(registry, paths)
    save = Workflow({"1": NodeInstance("1", "EmptyLatentImage", {"width": 64, "height": 32, "batch_size": 2}),
                     "2": NodeInstance("2", "LatentMultiply", {"multiplier": 0.0}),
                     "3": NodeInstance("3", "SaveLatent", {"filename_prefix": "run/x"})},
                    [Link("1", 0, "2", "samples"), Link("2", 0, "3", "samples")])
    result = executor.run(save)
    (report,) = result.outputs["3"]
    saved = paths.output_dir / "run" / "x_00001_.latent"
    assert report == {"latents": [str(saved)]}
    (paths.input_dir / "x.latent").write_bytes(saved.read_bytes())
    load = Workflow({"1": NodeInstance("1", "LoadLatent", {"latent": "x.latent"}),
                     "2": NodeInstance("2", "SaveLatent", {"filename_prefix": "again"})},
                    [Link("1", 0, "2", "samples")])
    executor.run(load)
    with safe_open(str(paths.output_dir / "again_00001_.latent"), framework="pt") as file:
        assert file.get_tensor("latent_tensor").shape == (2, 4, 4, 8)
    missing = Workflow({"1": NodeInstance("1", "LoadLatent", {"latent": "nope.latent"}),
                        "2": NodeInstance("2", "SaveLatent", {"filename_prefix": "again"})},
                       [Link("1", 0, "2", "samples")])
    with pytest.raises(ValidationError, match="latent"):
        executor.run(missing)
