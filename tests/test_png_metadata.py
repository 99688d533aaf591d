"""Workflows in PNG text chunks (ours, ComfyUI's, A1111's) and the A1111 "parameters" text."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from nodeflow.formats.a1111 import (format_a1111_parameters, model_hash, parameters_text,
                            parse_a1111_parameters, workflow_from_a1111)
from nodeflow.formats.comfy import from_comfy_api, to_comfy_api
from nodeflow.errors import WorkflowFormatError
from nodeflow.image.files import save_png_with_metadata
from nodeflow.formats.png import (read_png_workflow, read_text_chunks,
                                   workflow_text_chunks)
from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import Link, NodeInstance, Workflow
from nodeflow.formats import load_workflow

DATA = Path(__file__).parent / "data" / "comfy"
API = json.loads((DATA / "txt2img_api.json").read_text())
UI = json.loads((DATA / "txt2img_ui.json").read_text())
POSITIVE = "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,"


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


@pytest.fixture
def workflow(registry):
    workflow = from_comfy_api(API, registry)
    workflow.ui = {"nodes": {"3": {"pos": [863.0, 186.0]}}, "seed_control": {"3": {"seed": "fixed"}}}
    return workflow


def picture(seed=0, size=(24, 16)):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def write_plain_png(path, chunks):
    """A PNG as another program writes it: PIL and plain tEXt chunks."""
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    picture().save(path, pnginfo=info)
    return path


# ----- writing and reading ----------------------------------------------------------------

def test_write_then_read_gives_the_same_workflow_and_pixels(tmp_path, registry, workflow):
    image = picture()
    path = save_png_with_metadata(image, tmp_path / "out.png", workflow_text_chunks(workflow, registry))
    assert path == tmp_path / "out.png"
    assert read_png_workflow(path, registry) == workflow
    assert load_workflow(path, registry) == workflow  # `nodeflow run image.png`
    with Image.open(path) as saved:
        assert np.array_equal(np.asarray(saved), np.asarray(image))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary file left


def test_chunks_hold_our_json_comfyui_api_and_a1111_text(registry, workflow):
    chunks = workflow_text_chunks(workflow, registry)
    assert set(chunks) == {"nodeflow", "prompt", "parameters"}
    assert json.loads(chunks["nodeflow"]) == json.loads(json.dumps(workflow.to_dict()))
    assert json.loads(chunks["prompt"]) == API  # what ComfyUI itself would store
    assert chunks["parameters"] == (
        f"{POSITIVE}\nNegative prompt: text, watermark\n"
        "Steps: 20, Sampler: Euler, CFG scale: 8, Seed: 156680208700286, Size: 512x512, "
        "Model: v1-5-pruned-emaonly")
    sized = workflow_text_chunks(workflow, registry, (1024, 768), model_hash="6ce0161689")
    fields = parse_a1111_parameters(sized["parameters"])
    assert fields["Size"] == "1024x768" and fields["Model hash"] == "6ce0161689"


def test_unicode_prompts_survive(tmp_path, registry, workflow):
    workflow.nodes["6"].inputs["text"] = "猫, (masterpiece:1.2), café"
    path = save_png_with_metadata(picture(), tmp_path / "u.png", workflow_text_chunks(workflow, registry))
    assert read_png_workflow(path, registry).nodes["6"].inputs["text"] == "猫, (masterpiece:1.2), café"
    assert parse_a1111_parameters(read_text_chunks(path)["parameters"])["prompt"] == workflow.nodes["6"].inputs["text"]


def test_saving_never_overwrites(tmp_path):
    target = tmp_path / "taken.png"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        save_png_with_metadata(picture(), target, {"a": "b"})
    assert target.read_bytes() == b"keep me"
    assert os.listdir(tmp_path) == ["taken.png"]


def test_a_comfyui_png_reads_from_prompt_with_positions_from_workflow(tmp_path, registry):
    path = write_plain_png(tmp_path / "ComfyUI_00001_.png", {"prompt": json.dumps(API), "workflow": json.dumps(UI)})
    workflow = read_png_workflow(path, registry)
    expected = from_comfy_api(API, registry)
    assert (workflow.nodes, workflow.links) == (expected.nodes, expected.links)
    assert workflow.ui["nodes"]["4"]["pos"] == [26.0, 474.0]
    assert workflow.ui["seed_control"] == {"3": {"seed": "randomize"}}


def test_a_png_with_only_the_ui_workflow_reads(tmp_path, registry):
    path = write_plain_png(tmp_path / "ui_only.png", {"workflow": json.dumps(UI)})
    workflow = read_png_workflow(path, registry)
    assert workflow.nodes["6"].inputs["text"] == POSITIVE
    assert to_comfy_api(workflow, registry) == API


def test_ours_is_preferred_over_comfyui_chunks(tmp_path, registry, workflow):
    workflow.nodes["5"].inputs["width"] = 640
    chunks = {"nodeflow": json.dumps(workflow.to_dict()), "prompt": json.dumps(API), "workflow": json.dumps(UI)}
    path = write_plain_png(tmp_path / "both.png", chunks)
    assert read_png_workflow(path, registry).nodes["5"].inputs["width"] == 640


def test_missing_or_broken_metadata_names_the_file(tmp_path, registry):
    plain = tmp_path / "plain.png"
    picture().save(plain)
    with pytest.raises(WorkflowFormatError, match="plain.png: this image has no embedded workflow"):
        read_png_workflow(plain, registry)
    odd = write_plain_png(tmp_path / "odd.png", {"parameters": "a cat"})
    with pytest.raises(WorkflowFormatError, match="odd.png: its A1111 'parameters' cannot be read"):
        read_png_workflow(odd, registry)
    broken = write_plain_png(tmp_path / "broken.png", {"prompt": "{not json"})
    with pytest.raises(WorkflowFormatError, match="broken.png: the 'prompt' chunk is not valid JSON"):
        read_png_workflow(broken, registry)
    not_png = tmp_path / "notes.png"
    not_png.write_text("hello")
    with pytest.raises(WorkflowFormatError, match="notes.png: cannot read this image"):
        read_png_workflow(not_png, registry)


# ----- A1111 text --------------------------------------------------------------------------

def test_a1111_follows_links_maps_samplers_and_clip_skip(registry):
    workflow = from_comfy_api(API, registry)
    workflow.nodes["3"].inputs.update(sampler_name="dpmpp_2m", scheduler="karras", cfg=7.5, denoise=0.6)
    # a CLIPSetLastLayer (-2) between the checkpoint and the prompts, and a ConditioningCombine
    # (whose first input holds the positive prompt) between the prompt and the sampler
    workflow.nodes["10"] = NodeInstance("10", "CLIPSetLastLayer", {"stop_at_clip_layer": -2})
    workflow.nodes["11"] = NodeInstance("11", "ConditioningCombine")
    workflow.links = [l for l in workflow.links if l.dst_input not in ("clip", "positive")] + [
        Link("4", 1, "10", "clip"), Link("10", 0, "6", "clip"), Link("10", 0, "7", "clip"),
        Link("6", 0, "11", "conditioning_1"), Link("7", 0, "11", "conditioning_2"),
        Link("11", 0, "3", "positive")]
    fields = parse_a1111_parameters(parameters_text(workflow))
    assert fields == {"prompt": POSITIVE, "negative_prompt": "text, watermark", "Steps": "20",
                      "Sampler": "DPM++ 2M Karras", "CFG scale": "7.5", "Seed": "156680208700286",
                      "Size": "512x512", "Model": "v1-5-pruned-emaonly", "Clip skip": "2",
                      "Denoising strength": "0.6"}


def test_a1111_sampler_names():
    def sampler(name, scheduler="normal"):
        workflow = Workflow({"1": NodeInstance("1", "KSampler", {"sampler_name": name, "scheduler": scheduler})})
        return parse_a1111_parameters(parameters_text(workflow) + ", Steps: 1, Seed: 1")["Sampler"]

    assert sampler("euler_ancestral") == "Euler a"
    assert sampler("dpmpp_2m", "karras") == "DPM++ 2M Karras"
    assert sampler("dpmpp_sde_gpu", "karras") == "DPM++ SDE Karras"
    assert sampler("dpmpp_2m_sde", "exponential") == "DPM++ 2M SDE Exponential"
    assert sampler("uni_pc") == "UniPC" and sampler("some_new_sampler") == "some_new_sampler"
    assert parameters_text(Workflow({"1": NodeInstance("1", "EmptyLatentImage")})) is None


def test_parse_real_a1111_text_with_quoted_values():
    text = ("masterpiece, 1girl\nstanding\nNegative prompt: lowres, bad anatomy\n"
            'Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3620405043, Size: 512x768, '
            'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, '
            'Lora hashes: "detail: 8e3d4ab4d2f1, style: 1f2e3d4c5b6a", Version: v1.6.0')
    fields = parse_a1111_parameters(text)
    assert fields["prompt"] == "masterpiece, 1girl\nstanding"
    assert fields["negative_prompt"] == "lowres, bad anatomy"
    assert fields["Lora hashes"] == "detail: 8e3d4ab4d2f1, style: 1f2e3d4c5b6a"
    assert fields["Seed"] == "3620405043" and fields["Version"] == "v1.6.0"
    assert parse_a1111_parameters(format_a1111_parameters(fields)) == fields
    weighted = "(cat:1.2), (dog:0.8), (bird:1.1)"  # a prompt alone, not a line of fields
    assert parse_a1111_parameters(weighted) == {"prompt": weighted, "negative_prompt": ""}


_line = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=20).map(str.strip)


@settings(max_examples=60, deadline=None)
@given(prompt=st.lists(_line, min_size=1, max_size=3).map("\n".join).filter(lambda p: p.strip()),
       negative=_line,
       extra=st.dictionaries(st.sampled_from(["Model", "Lora hashes", "Hires upscaler", "Version"]),
                             _line.filter(bool), max_size=3))
def test_a1111_text_round_trips(prompt, negative, extra):
    prompt_lines = prompt.split("\n")
    if any(line.startswith("Negative prompt:") for line in prompt_lines) or ":" in prompt_lines[-1]:
        return  # ambiguous for A1111's own format too
    settings_ = {"prompt": prompt, "negative_prompt": negative, "Steps": "20", "Sampler": "Euler a",
                 "CFG scale": "7", **extra}
    assert parse_a1111_parameters(format_a1111_parameters(settings_)) == settings_


def test_model_hash_is_a1111_autov2(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"abc")
    # sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    assert model_hash(path) == "ba7816bf8f"


A1111_TEXT = ("masterpiece, a lighthouse at dusk\nNegative prompt: lowres, blurry\n"
              "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 3620405043, Size: 512x768, "
              "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, Version: v1.6.0")


def test_an_a1111_png_becomes_a_txt2img_workflow_with_its_settings(tmp_path, registry):
    from nodeflow.engine.validate import validate

    path = write_plain_png(tmp_path / "00001-3620405043.png", {"parameters": A1111_TEXT})
    workflow = read_png_workflow(path, registry)
    assert workflow.nodes["3"].inputs == {"seed": 3620405043, "steps": 28, "cfg": 6.5, "sampler_name": "dpmpp_2m",
                                          "scheduler": "karras", "denoise": 1.0}
    assert workflow.nodes["4"].inputs["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    assert validate(workflow, registry) == []
    expected = {k: v for k, v in parse_a1111_parameters(A1111_TEXT).items() if k not in ("Model hash", "Version")}
    assert parse_a1111_parameters(parameters_text(workflow)) == expected  # text -> graph -> text


def test_a1111_schedule_type_field_of_newer_versions():
    text = "a cat\nSteps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 64x64"
    assert workflow_from_a1111(text).nodes["3"].inputs["scheduler"] == "karras"
    assert workflow_from_a1111(text).nodes["3"].inputs["sampler_name"] == "euler_ancestral"
    with pytest.raises(ValueError, match="no 'Steps' field"):
        workflow_from_a1111("just a caption")
