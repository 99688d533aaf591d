"""ComfyUI API and UI formats in and out, on hand-written exports of ComfyUI's default graph."""

import copy
import json
from pathlib import Path

import pytest

from nodeflow.formats.comfy import from_comfy_api, from_comfy_ui, to_comfy_api, to_comfy_ui
from nodeflow.errors import UnknownNodeType, WorkflowFormatError
from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import Link, NodeInstance, Workflow
from nodeflow.formats import load_workflow

DATA = Path(__file__).parent / "data" / "comfy"
API = json.loads((DATA / "txt2img_api.json").read_text())
UI = json.loads((DATA / "txt2img_ui.json").read_text())
POSITIVE = "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,"

# The default graph, as our Workflow should hold it.
EXPECTED_INPUTS = {
    "3": {"seed": 156680208700286, "steps": 20, "cfg": 8.0, "sampler_name": "euler", "scheduler": "normal",
          "denoise": 1.0},
    "4": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
    "5": {"width": 512, "height": 512, "batch_size": 1},
    "6": {"text": POSITIVE},
    "7": {"text": "text, watermark"},
    "8": {},
    "9": {"filename_prefix": "ComfyUI"},
}
EXPECTED_LINKS = {("4", 0, "3", "model"), ("6", 0, "3", "positive"), ("7", 0, "3", "negative"),
                  ("5", 0, "3", "latent_image"), ("4", 1, "6", "clip"), ("4", 1, "7", "clip"),
                  ("3", 0, "8", "samples"), ("4", 2, "8", "vae"), ("8", 0, "9", "images")}


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def link_set(workflow):
    return {(l.src, l.src_output, l.dst, l.dst_input) for l in workflow.links}


def ui_graph(nodes, links, **extra):
    return {"nodes": nodes, "links": links, "groups": [], "version": 0.4, **extra}


# ----- API format ---------------------------------------------------------------------------

def test_api_import_of_the_default_graph(registry):
    workflow = from_comfy_api(API, registry)
    assert {i: n.inputs for i, n in workflow.nodes.items()} == EXPECTED_INPUTS
    assert isinstance(workflow.nodes["3"].inputs["cfg"], float)  # FLOAT widget given as 8
    assert link_set(workflow) == EXPECTED_LINKS
    assert all(n.title is None for n in workflow.nodes.values())  # display-name titles dropped
    assert workflow.nodes["6"].type == "CLIPTextEncode" and workflow.nodes["6"].version == 1


def test_api_export_equals_comfyui_export(registry):
    assert to_comfy_api(from_comfy_api(API, registry), registry) == API


def test_ours_to_api_to_ours_is_equal(registry):
    ours = from_comfy_api(API, registry)
    ours.nodes["9"].title = "Final image"
    ours.nodes["3"].inputs.update(seed=7, cfg=6.5, sampler_name="dpmpp_2m", scheduler="karras")
    again = from_comfy_api(json.loads(json.dumps(to_comfy_api(ours, registry))), registry)
    assert again == ours
    assert Workflow.from_dict(json.loads(json.dumps(again.to_dict()))) == ours


def test_api_export_fills_required_defaults_and_skips_muted_and_bypassed(registry):
    workflow = Workflow(
        {"1": NodeInstance("1", "EmptyLatentImage", {"width": 640}),
         "2": NodeInstance("2", "LatentFlip", {"flip_method": "x-axis: vertically"}, mode="bypassed"),
         "3": NodeInstance("3", "VAEDecode"),
         "4": NodeInstance("4", "EmptyLatentImage", {}, mode="muted")},
        [Link("1", 0, "2", "samples"), Link("2", 0, "3", "samples"), Link("4", 0, "3", "vae")])
    api = to_comfy_api(workflow, registry)
    assert set(api) == {"1", "3"}
    assert api["1"]["inputs"] == {"width": 640, "height": 512, "batch_size": 1}
    assert api["3"]["inputs"] == {"samples": ["1", 0]}  # through the bypassed flip; muted link gone


def test_api_accepts_a_prompt_request_body_and_int_ids(registry):
    body = {"client_id": "x", "prompt": {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 8}},
                                         "2": {"class_type": "VAEDecode", "inputs": {"samples": [1, 0]}}}}
    workflow = from_comfy_api(body, registry)
    assert workflow.input_link("2", "samples") == Link("1", 0, "2", "samples")


def test_api_unknown_types_and_dangling_links_are_reported_with_every_other_problem(registry):
    from nodeflow.runtime.paths import Paths
    from nodeflow.engine.validate import validate

    workflow = from_comfy_api({
        "12": {"class_type": "FancyNode", "inputs": {"x": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["12", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 7, "height": 64, "batch_size": 1}},
        "9": {"class_type": "SaveImag", "inputs": {"images": ["8", 0]}}}, registry)
    text = "\n".join(str(problem) for problem in validate(workflow, registry, Paths(models_dirs=())))
    assert "node 12 (FancyNode): unknown node type 'FancyNode'" in text
    assert "did you mean SaveImage" in text
    assert "node 8 (VAEDecode), input 'samples': a link refers to a missing node '3'" in text
    assert "node 5 (EmptyLatentImage), input 'width'" in text
    with pytest.raises(WorkflowFormatError, match="node 1 has no class_type"):
        from_comfy_api({"1": {"inputs": {}}}, registry)


# ----- UI format ----------------------------------------------------------------------------

def test_ui_import_of_the_default_graph_maps_widgets_and_seed_control(registry):
    workflow = from_comfy_ui(UI, registry)
    assert {i: n.inputs for i, n in workflow.nodes.items()} == EXPECTED_INPUTS
    assert link_set(workflow) == EXPECTED_LINKS
    assert workflow.ui["seed_control"] == {"3": {"seed": "randomize"}}
    assert workflow.ui["nodes"]["3"] == {"pos": [863.0, 186.0], "size": [315.0, 262.0]}
    # the same graph as the API export, apart from the UI section
    api = from_comfy_api(API, registry)
    assert (workflow.nodes, sorted(map(tuple, link_set(workflow)))) == \
        (api.nodes, sorted(map(tuple, link_set(api))))
    assert Workflow.from_dict(json.loads(json.dumps(workflow.to_dict()))) == workflow


def test_ui_import_without_control_after_generate(registry):
    """Files from before the frontend stored "control after generate" have no such value."""
    old = copy.deepcopy(UI)
    sampler = next(n for n in old["nodes"] if n["id"] == 3)
    sampler["widgets_values"] = [42, 30, 7.5, "dpmpp_2m", "karras", 0.75]
    workflow = from_comfy_ui(old, registry)
    assert workflow.nodes["3"].inputs == {"seed": 42, "steps": 30, "cfg": 7.5, "sampler_name": "dpmpp_2m",
                                          "scheduler": "karras", "denoise": 0.75}
    assert "seed_control" not in workflow.ui


def test_ui_ksampler_advanced_seed_in_the_middle(registry):
    """noise_seed is the second widget: the control value after it must not shift the rest."""
    node = {"id": 1, "type": "KSamplerAdvanced", "mode": 0,
            "widgets_values": ["enable", 5, "fixed", 25, 6, "euler", "normal", 0, 10000, "disable"]}
    inputs = from_comfy_ui(ui_graph([node], []), registry).nodes["1"].inputs
    assert inputs == {"add_noise": "enable", "noise_seed": 5, "steps": 25, "cfg": 6.0, "sampler_name": "euler",
                      "scheduler": "normal", "start_at_step": 0, "end_at_step": 10000,
                      "return_with_leftover_noise": "disable"}


# The default graph edited in ComfyUI: a PrimitiveNode drives the seed (converted to an input),
# a Reroute sits between the checkpoint's VAE and VAEDecode, a second Reroute chain carries the
# latent, the negative prompt is bypassed, an extra VAEDecode is muted and a Note is present.
EDITED = {
    "nodes": [
        {"id": 3, "type": "KSampler", "mode": 0, "pos": [1, 2], "size": {"0": 315, "1": 262},
         "inputs": [{"name": "model", "link": 1}, {"name": "positive", "link": 4},
                    {"name": "negative", "link": 6}, {"name": "latent_image", "link": 14},
                    {"name": "seed", "type": "INT", "link": 12, "widget": {"name": "seed"}}],
         "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1]},
        {"id": 4, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": ["v1-5.safetensors"]},
        {"id": 5, "type": "EmptyLatentImage", "mode": 0, "widgets_values": [512, 768, 1]},
        {"id": 6, "type": "CLIPTextEncode", "mode": 0, "inputs": [{"name": "clip", "link": 3}],
         "widgets_values": ["a cat"], "title": "Positive"},
        {"id": 7, "type": "CLIPTextEncode", "mode": 4, "inputs": [{"name": "clip", "link": 5}],
         "widgets_values": [""]},
        {"id": 8, "type": "VAEDecode", "mode": 0,
         "inputs": [{"name": "samples", "link": 7}, {"name": "vae", "link": 11}]},
        {"id": 9, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "link": 9}],
         "widgets_values": ["ComfyUI"]},
        {"id": 10, "type": "Reroute", "inputs": [{"name": "", "link": 8}]},
        {"id": 11, "type": "PrimitiveNode", "outputs": [{"name": "INT", "links": [12]}],
         "widgets_values": [777, "increment"]},
        {"id": 12, "type": "Note", "widgets_values": ["hello"]},
        {"id": 13, "type": "Reroute", "inputs": [{"name": "", "link": 2}]},
        {"id": 14, "type": "Reroute", "inputs": [{"name": "", "link": 13}]},
        {"id": 15, "type": "VAEDecode", "mode": 2,
         "inputs": [{"name": "samples", "link": 15}, {"name": "vae", "link": 16}]},
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 13, 0, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
              [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"],
              [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 10, 0, "VAE"], [11, 10, 0, 8, 1, "VAE"],
              [9, 8, 0, 9, 0, "IMAGE"], [12, 11, 0, 3, 4, "INT"], [13, 13, 0, 14, 0, "LATENT"],
              [14, 14, 0, 3, 3, "LATENT"], [15, 3, 0, 15, 0, "LATENT"], [16, 4, 2, 15, 1, "VAE"]],
    "groups": [{"title": "Prompts", "bounding": [400, 150, 450, 450], "color": "#3f789e"}],
}


def test_ui_primitive_reroute_note_mute_and_bypass(registry):
    workflow = from_comfy_ui(EDITED, registry)
    assert set(workflow.nodes) == {"3", "4", "5", "6", "7", "8", "9", "15"}  # virtual nodes gone
    assert workflow.nodes["3"].inputs["seed"] == 777  # the PrimitiveNode's value, as a literal
    assert workflow.input_link("3", "seed") is None
    assert workflow.ui["seed_control"]["3"] == {"seed": "increment"}  # the primitive's mode wins
    assert workflow.input_link("8", "vae") == Link("4", 2, "8", "vae")  # through one Reroute
    assert workflow.input_link("3", "latent_image") == Link("5", 0, "3", "latent_image")  # two
    assert workflow.nodes["7"].mode == "bypassed" and workflow.nodes["15"].mode == "muted"
    assert workflow.nodes["6"].title == "Positive"
    assert workflow.ui["groups"] == EDITED["groups"]
    assert workflow.ui["nodes"]["3"]["size"] == [315.0, 262.0]  # old {"0":, "1":} sizes
    api = to_comfy_api(workflow, registry)
    assert "15" not in api and "7" not in api
    # a bypassed CLIPTextEncode has no CONDITIONING input to pass on: its consumer gets nothing
    assert "negative" not in api["3"]["inputs"] and api["3"]["inputs"]["positive"] == ["6", 0]
    assert api["3"]["inputs"]["seed"] == 777 and api["8"]["inputs"]["vae"] == ["4", 2]


def test_ui_converted_widget_linked_from_a_real_node_becomes_a_link_and_pin(registry):
    nodes = [{"id": 1, "type": "EmptyLatentImage", "mode": 0, "widgets_values": [512, 512, 1],
              "inputs": [{"name": "width", "type": "INT", "link": 5, "widget": {"name": "width"}}]},
             {"id": 2, "type": "EmptyLatentImage", "mode": 0, "widgets_values": [64, 64, 1]}]
    workflow = from_comfy_ui(ui_graph(nodes, [[5, 2, 0, 1, 0, "INT"]]), registry)
    assert workflow.input_link("1", "width") == Link("2", 0, "1", "width")
    assert "width" not in workflow.nodes["1"].inputs and workflow.nodes["1"].inputs["height"] == 512
    assert workflow.ui["pins"] == {"1": ["width"]}


def test_ui_schema_1_object_links_and_minimal_nodes(registry):
    nodes = [{"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["a.safetensors"]},
             {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["hi"]},  # no "inputs" list
             {"id": 8, "type": "VAEDecode"}]
    links = [{"id": 1, "origin_id": 4, "origin_slot": 1, "target_id": 6, "target_slot": 0, "type": "CLIP"},
             {"id": 2, "origin_id": 4, "origin_slot": 2, "target_id": 8, "target_slot": 1, "type": "VAE"}]
    workflow = from_comfy_ui(ui_graph(nodes, links, version=1), registry)
    assert link_set(workflow) == {("4", 1, "6", "clip"), ("4", 2, "8", "vae")}


def test_ui_errors_name_the_node(registry):
    with pytest.raises(UnknownNodeType, match="node 7: unknown node type 'WAS_Image_Blend'"):
        from_comfy_ui(ui_graph([{"id": 7, "type": "WAS_Image_Blend", "widgets_values": []}], []), registry)
    bad_link = ui_graph([{"id": 8, "type": "VAEDecode", "inputs": [{"name": "samples", "link": 1}]}],
                        [[1, 99, 0, 8, 0, "LATENT"]])
    with pytest.raises(WorkflowFormatError, match="link 1 comes from a missing node 99"):
        from_comfy_ui(bad_link, registry)
    with pytest.raises(WorkflowFormatError, match="malformed link"):
        from_comfy_ui(ui_graph([], [[1, 2]]), registry)


def test_load_workflow_sniffs_the_formats(tmp_path, registry):
    (tmp_path / "api.json").write_text(json.dumps(API))
    (tmp_path / "ui.json").write_text(json.dumps(UI))
    assert load_workflow(tmp_path / "api.json", registry).nodes["6"].inputs["text"] == POSITIVE
    assert load_workflow(tmp_path / "ui.json", registry).nodes["7"].inputs["text"] == "text, watermark"


def test_comfyui_primitive_nodes_are_real_nodes_and_fold_into_literals_without_them(registry):
    api = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 640}},
           "2": {"class_type": "PrimitiveFloat", "inputs": {"value": 3}},
           "3": {"class_type": "EmptyLatentImage", "inputs": {"width": ["1", 0], "height": 512, "batch_size": 1}},
           "4": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "scale_by": ["2", 0],
                                                              "upscale_method": "nearest-exact"}}}
    assert "PrimitiveInt" in registry
    kept = from_comfy_api(api, registry)
    assert set(kept.nodes) == {"1", "2", "3", "4"} and kept.nodes["1"].inputs == {"value": 640}
    assert link_set(kept) == {("1", 0, "3", "width"), ("2", 0, "4", "scale_by"), ("3", 0, "4", "samples")}
    # a registry without them (a custom build) still reads the workflow: the constants become literals
    without = Registry.from_modules("nodeflow_nodes.latent", "nodeflow_nodes.conditioning")
    assert "PrimitiveInt" not in without
    workflow = from_comfy_api(api, without)
    assert set(workflow.nodes) == {"3", "4"}
    assert workflow.nodes["3"].inputs["width"] == 640 and workflow.nodes["4"].inputs["scale_by"] == 3.0
    assert link_set(workflow) == {("3", 0, "4", "samples")}
    nodes = [{"id": 1, "type": "PrimitiveStringMultiline", "widgets_values": ["a fox"]},
             {"id": 2, "type": "CLIPTextEncode", "widgets_values": ["old"],
              "inputs": [{"name": "clip", "link": None},
                         {"name": "text", "link": 1, "widget": {"name": "text"}}]}]
    ui = from_comfy_ui(ui_graph(nodes, [[1, 1, 0, 2, 1, "STRING"]]), without)
    assert set(ui.nodes) == {"2"} and ui.nodes["2"].inputs == {"text": "a fox"} and not ui.links


def test_group_nodes_are_reported_as_such(registry):
    with pytest.raises(WorkflowFormatError, match="node 5 is a group node"):
        from_comfy_ui(ui_graph([{"id": 5, "type": "workflow>My group", "widgets_values": []}], []), registry)


def test_ui_titles_equal_to_the_display_name_are_dropped(registry):
    nodes = [{"id": 1, "type": "EmptyLatentImage", "title": "Empty Latent Image", "widgets_values": [8, 8, 1]},
             {"id": 2, "type": "EmptyLatentImage", "title": "Small", "widgets_values": [8, 8, 1]}]
    workflow = from_comfy_ui(ui_graph(nodes, []), registry)
    assert (workflow.nodes["1"].title, workflow.nodes["2"].title) == (None, "Small")


@pytest.mark.parametrize("name", ["txt2img_api.json", "txt2img_ui.json"])
def test_comfyui_exports_validate_unchanged(tmp_path, registry, name):
    from nodeflow.runtime.paths import Paths
    from nodeflow.engine.validate import validate

    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "v1-5-pruned-emaonly.safetensors").write_bytes(b"")
    paths = Paths(models_dirs=(tmp_path / "models",))
    assert validate(load_workflow(DATA / name, registry), registry, paths) == []
    # the edited graph's bypassed prompt leaves the sampler's negative input empty, as in ComfyUI
    problems = validate(from_comfy_ui(EDITED, registry), registry)
    assert [(p.node_id, p.input) for p in problems] == [("3", "negative")]


def test_ours_to_ui_to_ours_is_equal(registry):
    """Widgets written positionally (seed modes after seeds), modes, titles, layout, groups."""
    ours = from_comfy_ui(EDITED, registry)
    ours.nodes["9"].inputs["embed_workflow"] = False  # complete: positional values hold every widget
    for index, node_id in enumerate(ours.nodes):
        ours.ui["nodes"].setdefault(node_id, {}).update(pos=[10.0 * index, 5.0], size=[300.0, 100.0])
    exported = json.loads(json.dumps(to_comfy_ui(ours, registry)))
    sampler = next(n for n in exported["nodes"] if n["id"] == 3)
    assert sampler["widgets_values"] == [777, "increment", 20, 8.0, "euler", "normal", 1.0]
    assert {n["id"]: n["mode"] for n in exported["nodes"]}[7] == 4
    assert from_comfy_ui(exported, registry) == ours


def test_ui_export_numbers_named_nodes_and_lays_them_out(registry):
    ours = Workflow({"latent": NodeInstance("latent", "EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1}),
                     "flip": NodeInstance("flip", "LatentFlip", {"flip_method": "x-axis: vertically"}),
                     "2": NodeInstance("2", "VAEDecode")},
                    [Link("latent", 0, "flip", "samples"), Link("flip", 0, "2", "samples")])
    exported = to_comfy_ui(ours, registry)
    by_type = {n["type"]: n for n in exported["nodes"]}
    assert sorted(n["id"] for n in exported["nodes"]) == [2, 3, 4]
    assert by_type["EmptyLatentImage"]["pos"][0] < by_type["LatentFlip"]["pos"][0] < by_type["VAEDecode"]["pos"][0]
    back = from_comfy_ui(exported, registry)
    assert {(back.nodes[l.src].type, back.nodes[l.dst].type, l.dst_input) for l in back.links} == \
        {("EmptyLatentImage", "LatentFlip", "samples"), ("LatentFlip", "VAEDecode", "samples")}


def test_odd_but_real_files(registry):
    """Deleted links left as null, broken sizes, a node with id "prompt", no registry on export."""
    nodes = [{"id": 1, "type": "EmptyLatentImage", "size": {"0": 315}, "pos": [1, 2], "widgets_values": [8, 8, 1]},
             {"id": 2, "type": "VAEDecode", "inputs": [{"name": "samples", "link": 3}]}]
    workflow = from_comfy_ui(ui_graph(nodes, [None, [3, 1, 0, 2, 0, "LATENT"]]), registry)
    assert workflow.ui["nodes"]["1"] == {"pos": [1.0, 2.0]} and len(workflow.links) == 1
    odd_ids = {"prompt": {"class_type": "EmptyLatentImage", "inputs": {"width": 8}}}
    assert set(from_comfy_api(odd_ids, registry).nodes) == {"prompt"}
    muted = Workflow({"1": NodeInstance("1", "EmptyLatentImage", mode="muted"), "2": NodeInstance("2", "VAEDecode")},
                     [Link("1", 0, "2", "samples")])
    assert to_comfy_api(muted) == {"2": {"inputs": {}, "class_type": "VAEDecode"}}


def test_comfyui_api_export_runs_unchanged(tmp_path):
    """The API file as ComfyUI writes it, only the checkpoint name pointing at a stand-in model."""
    from nodeflow.engine.executor import Executor
    from nodeflow.runtime.paths import Paths
    from nodeflow.engine.registry import Registry
    from tests.factories import write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "models" / "checkpoints" / "v1-5-pruned-emaonly.safetensors")
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                  assets_dir=tmp_path / "no-assets")
    registry = Registry.load(paths)
    workflow = load_workflow(DATA / "txt2img_api.json", registry)
    sampler = next(node for node in workflow.nodes.values() if node.type == "KSampler")
    sampler.inputs["steps"] = 2  # keep the test fast; everything else as exported
    result = Executor(registry, paths).run(workflow)
    saved = [p for outputs in result.outputs.values() for report in outputs for p in report.get("images", [])]
    assert len(saved) == 1 and saved[0].endswith(".png")


@pytest.mark.parametrize("name, ours", [("dpmpp_2m_sde_gpu", "dpmpp_2m_sde"), ("dpmpp_sde_gpu", "dpmpp_sde"),
                                        ("dpmpp_3m_sde_gpu", "dpmpp_3m_sde"), ("euler", "euler")])
def test_comfyui_gpu_sampler_names_are_the_same_samplers(registry, name, ours):
    data = json.loads((DATA / "txt2img_api.json").read_text())
    data["3"]["inputs"]["sampler_name"] = name
    assert from_comfy_api(data, registry).nodes["3"].inputs["sampler_name"] == ours


def test_api_import_ignores_the_upload_button_older_exports_wrote_as_an_input(registry):
    """ComfyUI_examples' depth T2I-Adapter PNG: LoadImage's API inputs hold the frontend's
    upload button ("choose file to upload": "image"); ComfyUI's server ignores it."""
    workflow = from_comfy_api({"20": {"class_type": "LoadImage", "inputs": {
        "image": "shark_depthmap.png", "choose file to upload": "image"}}}, registry)
    assert workflow.nodes["20"].inputs == {"image": "shark_depthmap.png"}
    unknown = from_comfy_api({"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "surprise": 1}}},
                             registry)
    assert unknown.nodes["1"].inputs == {"width": 64, "surprise": 1}  # anything else stays, for validation to name
