"""SaveImage: names, no overwriting (also concurrently), prefix safety, embedded workflows."""

import json
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image

from nodeflow.engine.context import RunContext
from nodeflow.engine.provenance import Provenance
from nodeflow.errors import NodeInputError
from nodeflow.image.files import check_prefix, expand_prefix
from nodeflow.runtime.paths import Paths
from nodeflow.formats.png import read_png_workflow, read_text_chunks
from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import NodeInstance, Workflow
from nodeflow_nodes.save import preview_image, save_image


@pytest.fixture
def ctx(tmp_path):
    workflow = Workflow({"3": NodeInstance("3", "KSampler", {"seed": 42, "steps": 20, "cfg": 7.0,
                                                             "sampler_name": "euler", "scheduler": "normal"}),
                         "9": NodeInstance("9", "SaveImage", {"filename_prefix": "x"})})
    paths = Paths(output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp")
    return RunContext(paths=paths, provenance=Provenance.of(workflow, Registry.load(), paths))


def images(n=1, value=0.5):
    return torch.full((n, 8, 16, 3), value)


def test_names_count_up_and_never_overwrite(ctx, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "pic_00003_.png").write_bytes(b"keep me")
    saved = save_image(images(2), "pic", ctx)["images"]
    assert [p.rsplit("/", 1)[1] for p in saved] == ["pic_00004_.png", "pic_00005_.png"]
    assert (tmp_path / "out" / "pic_00003_.png").read_bytes() == b"keep me"
    assert Image.open(saved[0]).size == (16, 8)


def test_concurrent_saves_never_collide(ctx):
    results, errors = [], []

    def worker():
        try:
            results.extend(save_image(images(3), "same", ctx)["images"])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 12 and len(set(results)) == 12


@pytest.mark.parametrize("prefix", ["../escape", "/abs/path", "a/../../b", "C:evil"])
def test_escaping_prefixes_are_refused(prefix):
    with pytest.raises(ValueError):
        check_prefix(prefix)


def test_symlink_out_of_the_output_folder_is_refused(ctx, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NodeInputError, match="outside the output folder"):
        save_image(images(), "link/pic", ctx)
    assert not list((tmp_path / "elsewhere").iterdir())


def test_subfolders_and_placeholders(ctx, tmp_path):
    saved = save_image(images(), "runs/%date:yyyy%/seed_%KSampler.seed%", ctx)["images"]
    assert "/runs/" in saved[0] and "seed_42_00001_.png" in saved[0]
    assert expand_prefix("%date:yyyy-MM-dd%").count("-") == 2


def test_metadata_chunks_and_switch(ctx):
    saved = save_image(images(), "meta", ctx)["images"][0]
    chunks = read_text_chunks(saved)
    assert {"nodeflow", "prompt", "parameters"} <= set(chunks)
    assert json.loads(chunks["prompt"])["3"]["class_type"] == "KSampler"
    assert "Seed: 42" in chunks["parameters"] and "Size: 16x8" in chunks["parameters"]
    assert read_png_workflow(saved, ctx.provenance.registry) == ctx.provenance.workflow
    plain = save_image(images(), "plain", ctx, embed_workflow=False)["images"][0]
    assert not {"nodeflow", "prompt"} & set(read_text_chunks(plain))


def test_pixels_are_truncated_like_comfyui(ctx):
    saved = save_image(images(value=0.999), "trunc", ctx)["images"][0]
    assert Image.open(saved).getpixel((0, 0)) == (254, 254, 254)


def test_preview_writes_only_to_the_temp_folder(ctx, tmp_path):
    shown = []
    ctx.on_event = shown.append
    result = preview_image(images(), ctx)
    assert result["images"][0].startswith(str(tmp_path / "tmp"))
    assert not (tmp_path / "out").exists()
    assert type(shown[0]).__name__ == "ImagesShown"


def _save_in_process(folder, count, queue):
    from nodeflow.image.files import save_png

    picture = Image.new("RGB", (4, 4))
    queue.put([str(save_png(picture, folder, "race")) for _ in range(count)])


def test_two_processes_saving_at_once_never_collide(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_save_in_process, args=(tmp_path, 10, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    names = queue.get(timeout=60) + queue.get(timeout=60)
    for worker in workers:
        worker.join(timeout=60)
    assert len(set(names)) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"race_{i:05}_.png" for i in range(1, 21)]


def test_symlinked_escape_creates_nothing_outside(ctx, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NodeInputError, match="outside the output folder"):
        save_image(images(), "link/deeper/pic", ctx)
    assert not (tmp_path / "elsewhere" / "deeper").exists()


def test_placeholders_cannot_smuggle_an_escape(ctx):
    ctx.provenance.workflow.nodes["3"].inputs["sampler_name"] = "../../evil"
    with pytest.raises(NodeInputError, match="'..'"):
        save_image(images(), "x/%KSampler.sampler_name%", ctx)


def test_prefix_is_checked_at_validation_time():
    spec = save_image.__nodeflow_spec__.input("filename_prefix")
    assert spec.check_value("../up") is not None and spec.check_value("/abs") is not None
    assert spec.check_value("ok/sub/name") is None


def test_saving_without_hard_links_still_never_overwrites(tmp_path, monkeypatch):
    import os

    from nodeflow.image.files import save_png

    def no_links(*args):
        raise PermissionError("no hard links here")

    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "x_00001_.png").write_bytes(b"keep")
    first = save_png(Image.new("RGB", (2, 2)), tmp_path, "x")
    assert first.name == "x_00002_.png" and Image.open(first).size == (2, 2)
    assert (tmp_path / "x_00001_.png").read_bytes() == b"keep"
    assert not list(tmp_path.glob(".saving-*"))  # temporary files removed


def test_saved_files_get_the_usual_permissions(ctx):
    import os

    saved = save_image(images(), "perm", ctx)["images"][0]
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(saved).st_mode & 0o777 == 0o666 & ~mask


def test_a_preview_session_removes_its_previews_and_what_crashed_sessions_left(tmp_path):
    import os
    import time

    from nodeflow.runtime.preview_folders import preview_session

    root = tmp_path / "tmp" / "previews"
    crashed, recent = root / "session-crashed", root / "session-other"
    for folder in (crashed, recent):
        folder.mkdir(parents=True)
        (folder / "preview_x_00001_.png").write_bytes(b"x")
    os.utime(crashed, (time.time() - 7200, time.time() - 7200))
    paths = Paths(models_dirs=(), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp")
    with preview_session(paths) as session:
        context = RunContext(paths=session)
        (report,) = (preview_image(images(), context),)
        written = [Path(p) for p in report["images"]]
        assert written and all(p.parent == session.previews_dir and p.is_file() for p in written)
        assert not crashed.exists() and recent.exists()  # another live session's folder stays
    assert not session.previews_dir.exists()
    assert not (tmp_path / "out").exists()


def test_weight_free_example_workflow_runs_and_reruns_from_its_png(tmp_path):
    from nodeflow.engine.executor import Executor
    from nodeflow.formats import load_workflow
    from tests.project import ROOT

    paths = Paths(output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "tmp",
                  models_dirs=(tmp_path / "models",))
    registry = Registry.load(paths)
    workflow = load_workflow(ROOT / "workflows" / "shapes_no_model.json", registry)
    [saved] = Executor(registry, paths).run(workflow).outputs["15"][0]["images"]
    pixels = Image.open(saved).convert("RGB")
    assert pixels.size == (160, 160)  # 128 + 2 * 16 padding
    near = lambda got, want: all(abs(g - w) <= 1 for g, w in zip(got, want))  # noqa: E731
    assert near(pixels.getpixel((80, 80)), (0xFF, 0x57, 0x22))  # orange square in the middle
    assert near(pixels.getpixel((22, 80)), (0x11, 0x11, 0xAA))  # blue around it
    assert near(pixels.getpixel((4, 4)), (127, 127, 127))  # grey outpainting border
    again = load_workflow(saved, registry)
    assert again == workflow
    [second] = Executor(registry, paths).run(again).outputs["15"][0]["images"]
    assert second != saved and Image.open(second).tobytes() == pixels.tobytes()


def test_comfyui_size_date_and_batch_placeholders(ctx):
    from datetime import datetime

    saved = save_image(images(2), "%width%x%height%_b%batch_num%", ctx)["images"]
    assert [p.rsplit("/", 1)[1] for p in saved] == ["16x8_b0_00001_.png", "16x8_b1_00001_.png"]
    when = datetime(2026, 1, 2, 3, 4, 5)
    assert expand_prefix("%date:yyyy-MM-dd hhmmss%/%year%%month%", now=when) == "2026-01-02 030405/202601"
    assert expand_prefix("%unknown%") == "%unknown%"


def test_parameters_carry_the_checkpoint_hash_cached_by_file(tmp_path):
    import hashlib

    from nodeflow.engine.workflow import Link

    models = tmp_path / "models" / "checkpoints"
    models.mkdir(parents=True)
    (models / "mine.safetensors").write_bytes(b"weights" * 100)
    workflow = Workflow({"4": NodeInstance("4", "CheckpointLoaderSimple", {"ckpt_name": "mine.safetensors"}),
                         "3": NodeInstance("3", "KSampler", {"seed": 1, "steps": 2, "cfg": 7.0,
                                                             "sampler_name": "euler", "scheduler": "normal"})},
                        [Link("4", 0, "3", "model")], {})
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                  assets_dir=tmp_path / "none")
    ctx = RunContext(paths=paths, provenance=Provenance.of(workflow, Registry.load(), paths))
    saved = save_image(images(), "hash", ctx)["images"][0]
    expected = hashlib.sha256(b"weights" * 100).hexdigest()[:10]
    assert f"Model hash: {expected}" in read_text_chunks(saved)["parameters"]
    assert "Model: mine" in read_text_chunks(saved)["parameters"]
    assert expected in (tmp_path / "tmp" / "model_hashes.json").read_text()


def test_prefix_naming_only_a_folder_saves_inside_it(ctx, tmp_path):
    saved = save_image(images(), "only_folder/", ctx)["images"][0]
    assert saved == str(tmp_path / "out" / "only_folder" / "_00001_.png")


def test_a_prefix_through_a_symlink_out_of_the_output_folder_is_a_validation_error(tmp_path):
    from nodeflow.engine.registry import Registry
    from nodeflow.engine.validate import validate
    from nodeflow.formats import load_workflow
    from tests.project import ROOT

    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    paths = Paths(models_dirs=(), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp")
    registry = Registry.load(paths)
    workflow = load_workflow(ROOT / "workflows" / "shapes_no_model.json", registry)
    workflow.nodes["15"].inputs["filename_prefix"] = "link/x"
    [problem] = validate(workflow, registry, paths)
    assert problem.node_id == "15" and "leads outside the output folder" in str(problem)
    workflow.nodes["15"].inputs["filename_prefix"] = "inside/x"
    assert validate(workflow, registry, paths) == []
    assert not (tmp_path / "out" / "inside").exists()  # validation creates nothing


def test_without_hard_links_a_save_creates_its_file_exclusively(tmp_path, monkeypatch):
    """A file system without hard links (FAT, some network shares): the PNG is copied into an
    exclusively created file; an existing file is never overwritten, and no partial is left."""
    from nodeflow.image.files import save_png_with_metadata

    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted", str(target))

    monkeypatch.setattr("os.link", no_links)
    image = Image.new("RGB", (8, 8), (200, 10, 10))
    saved = save_png_with_metadata(image, tmp_path / "a.png", {"prompt": "x"})
    with Image.open(saved) as reread:
        assert reread.getpixel((0, 0)) == (200, 10, 10) and reread.text["prompt"] == "x"
    kept = saved.read_bytes()
    with pytest.raises(FileExistsError):
        save_png_with_metadata(Image.new("RGB", (8, 8)), saved, None)
    assert saved.read_bytes() == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
