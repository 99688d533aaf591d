"""ComfyUI API and UI formats in and out."""

import pytest

from nodeflow.comfy_format import from_comfy_api, from_comfy_ui, to_comfy_api
from nodeflow.errors import UnknownNodeType
from nodeflow.registry import Registry
from nodeflow.workflow import load_workflow

API = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 8.0, "sampler_name": "euler",
                                               "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                               "positive": ["6", 0], "negative": ["7", 0],
                                               "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
          "_meta": {"title": "Save"}},
}

# ComfyUI's UI export of the same graph (trimmed to what matters), with a PrimitiveNode driving
# the seed and a Reroute between the VAE and VAEDecode.
UI = {
    "nodes": [
        {"id": 3, "type": "KSampler", "mode": 0, "pos": [1, 2],
         "inputs": [{"name": "model", "link": 1}, {"name": "positive", "link": 4},
                    {"name": "negative", "link": 6}, {"name": "latent_image", "link": 2},
                    {"name": "seed", "link": 12, "widget": {"name": "seed"}}],
         "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1]},
        {"id": 4, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": ["v1-5.safetensors"]},
        {"id": 5, "type": "EmptyLatentImage", "mode": 0, "widgets_values": [512, 512, 1]},
        {"id": 6, "type": "CLIPTextEncode", "mode": 0, "inputs": [{"name": "clip", "link": 3}],
         "widgets_values": ["a cat"]},
        {"id": 7, "type": "CLIPTextEncode", "mode": 4, "inputs": [{"name": "clip", "link": 5}],
         "widgets_values": [""]},
        {"id": 8, "type": "VAEDecode", "mode": 0,
         "inputs": [{"name": "samples", "link": 7}, {"name": "vae", "link": 11}]},
        {"id": 9, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "link": 9}],
         "widgets_values": ["ComfyUI"]},
        {"id": 10, "type": "Reroute", "inputs": [{"name": "", "link": 8}]},
        {"id": 11, "type": "PrimitiveNode", "widgets_values": [777, "fixed"]},
        {"id": 12, "type": "Note", "widgets_values": ["hello"]},
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
              [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"],
              [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 10, 0, "VAE"], [11, 10, 0, 8, 1, "VAE"],
              [9, 8, 0, 9, 0, "IMAGE"], [12, 11, 0, 3, 4, "INT"]],
    "groups": [{"title": "g"}],
}


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def test_api_round_trip(registry):
    workflow = from_comfy_api(API, registry)
    assert workflow.nodes["3"].inputs["seed"] == 5 and workflow.nodes["9"].title == "Save"
    assert workflow.input_link("3", "model").src == "4"
    assert to_comfy_api(workflow, registry) == API


def test_unknown_type_names_node(registry):
    with pytest.raises(UnknownNodeType, match="node 1: unknown node type 'FancyNode'"):
        from_comfy_api({"1": {"class_type": "FancyNode", "inputs": {}}}, registry)


def test_ui_import_maps_widgets_primitives_reroutes_and_modes(registry):
    workflow = from_comfy_ui(UI, registry)
    sampler = workflow.nodes["3"].inputs
    assert sampler == {"seed": 777, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
                       "denoise": 1}
    assert set(workflow.nodes) == {"3", "4", "5", "6", "7", "8", "9"}
    assert workflow.input_link("8", "vae").src == "4" and workflow.input_link("8", "vae").src_output == 2
    assert workflow.nodes["7"].mode == "bypassed"
    assert workflow.ui["groups"] == [{"title": "g"}]


def test_load_workflow_sniffs_the_format(tmp_path, registry):
    import json

    (tmp_path / "api.json").write_text(json.dumps(API))
    (tmp_path / "ui.json").write_text(json.dumps(UI))
    assert load_workflow(tmp_path / "api.json", registry).nodes["6"].inputs["text"] == "a cat"
    assert load_workflow(tmp_path / "ui.json", registry).nodes["6"].inputs["text"] == "a cat"
