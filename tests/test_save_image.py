"""SaveImage: names, no overwriting (also concurrently), prefix safety, embedded workflows."""

import json
import threading

import pytest
import torch
from PIL import Image

from nodeflow.context import RunContext
from nodeflow.errors import NodeInputError
from nodeflow.image_files import check_prefix, expand_prefix
from nodeflow.paths import Paths
from nodeflow.png_metadata import read_png_workflow, read_text_chunks
from nodeflow.registry import Registry
from nodeflow.workflow import NodeInstance, Workflow
from nodeflow_nodes.save import preview_image, save_image


@pytest.fixture
def ctx(tmp_path):
    workflow = Workflow({"3": NodeInstance("3", "KSampler", {"seed": 42, "steps": 20, "cfg": 7.0,
                                                             "sampler_name": "euler", "scheduler": "normal"}),
                         "9": NodeInstance("9", "SaveImage", {"filename_prefix": "x"})})
    return RunContext(paths=Paths(output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp"),
                      workflow=workflow, registry=Registry.load())


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
    assert read_png_workflow(saved, ctx.registry) == ctx.workflow
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
