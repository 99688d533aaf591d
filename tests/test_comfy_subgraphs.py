"""ComfyUI subgraphs and legacy group nodes (issue 16): flattened on import, links and widget
values intact. Hand-written workflows check each rule exactly; ComfyUI templates with subgraphs
(tests/data/comfy/templates, see its README) check real files."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from nodeflow.engine.graph import active_links
from nodeflow.engine.registry import Registry
from nodeflow.engine.validate import validate
from nodeflow.engine.workflow import Workflow, dumps, save_workflow
from nodeflow.errors import UnknownNodeType, WorkflowFormatError
from nodeflow.formats import load_workflow
from nodeflow.formats.comfy import from_comfy_ui, to_comfy_api
from nodeflow.formats.comfy_subgraphs import flatten_subgraphs
from nodeflow.runtime.paths import Paths

TEMPLATES = Path(__file__).parent / "data" / "comfy" / "templates"
SAMPLE = "5a7c0e51-0001-4000-8000-000000000001"
MAKE = "5a7c0e51-0002-4000-8000-000000000002"
FLIP = "5a7c0e51-0003-4000-8000-000000000003"


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def link_set(workflow):
    return {(l.src, l.src_output, l.dst, l.dst_input) for l in workflow.links}


def node(node_id, node_type, inputs=(), outputs=(), widgets=None, **extra):
    """A UI node; ``inputs``: (name, link id or None[, widget name]); ``outputs``: (name, link ids)."""
    return {"id": node_id, "type": node_type, "pos": extra.pop("pos", [0, 0]), "size": [300, 100], "mode": 0,
            "inputs": [{"name": name, "type": "*", "link": link, **({"widget": {"name": rest[0]}} if rest else {})}
                       for name, link, *rest in inputs],
            "outputs": [{"name": name, "type": "*", "links": list(links)} for name, links in outputs],
            "properties": {}, "widgets_values": [] if widgets is None else widgets, **extra}


def definition(definition_id, name, nodes, links, inputs=(), outputs=()):
    """A subgraph definition; ``links``: (id, from, from_slot, to, to_slot) with -10 / -20 for its
    input and output nodes; ``inputs`` / ``outputs``: (name, type)."""
    objects = [{"id": i, "origin_id": o, "origin_slot": os, "target_id": t, "target_slot": ts, "type": "*"}
               for i, o, os, t, ts in links]
    return {"id": definition_id, "version": 1, "name": name, "nodes": nodes, "links": objects, "groups": [],
            "inputNode": {"id": -10, "bounding": [0, 0, 120, 60]},
            "outputNode": {"id": -20, "bounding": [900, 0, 120, 60]},
            "inputs": [{"id": f"in-{n}", "name": n, "type": t,
                        "linkIds": [l[0] for l in links if l[1] == -10 and l[2] == k]}
                       for k, (n, t) in enumerate(inputs)],
            "outputs": [{"id": f"out-{n}", "name": n, "type": t,
                         "linkIds": [l[0] for l in links if l[3] == -20 and l[4] == k]}
                        for k, (n, t) in enumerate(outputs)],
            "widgets": []}


def ui(nodes, links, subgraphs=(), **extra):
    return {"last_node_id": 99, "last_link_id": max([l[0] for l in links], default=0), "nodes": nodes,
            "links": links, "groups": [], "definitions": {"subgraphs": list(subgraphs)}, "config": {}, "extra": {},
            "version": 0.4, **extra}


# "Text to image": a checkpoint's model, clip and vae go in; the image and the latent come out. Its
# clip input feeds two prompts, its text and seed inputs feed widgets (promoted: the instance holds
# their values, in input order), its image output is used twice outside.
TEXT_TO_IMAGE = definition(SAMPLE, "Text to image", [
    node(6, "CLIPTextEncode", [("clip", 101), ("text", 102, "text")], [("CONDITIONING", [105])], ["inner prompt"],
         pos=[300, 100]),
    node(7, "CLIPTextEncode", [("clip", 103)], [("CONDITIONING", [106])], ["blurry"], pos=[300, 400]),
    node(5, "EmptyLatentImage", [], [("LATENT", [107])], [64, 64, 1], pos=[300, 700]),
    node(3, "KSampler",
         [("model", 104), ("positive", 105), ("negative", 106), ("latent_image", 107), ("seed", 108, "seed")],
         [("LATENT", [109, 112])], [1, "fixed", 2, 8, "euler", "normal", 1], pos=[700, 100]),
    node(8, "VAEDecode", [("samples", 109), ("vae", 110)], [("IMAGE", [111])], pos=[1100, 100]),
], [(101, -10, 1, 6, 0), (102, -10, 3, 6, 1), (103, -10, 1, 7, 0), (104, -10, 0, 3, 0), (105, 6, 0, 3, 1),
    (106, 7, 0, 3, 2), (107, 5, 0, 3, 3), (108, -10, 4, 3, 4), (109, 3, 0, 8, 0), (110, -10, 2, 8, 1),
    (111, 8, 0, -20, 0), (112, 3, 0, -20, 1)],
    inputs=[("model", "MODEL"), ("clip", "CLIP"), ("vae", "VAE"), ("text", "STRING"), ("seed", "INT")],
    outputs=[("IMAGE", "IMAGE"), ("LATENT", "LATENT")])

ONE_LEVEL = ui([
    node(4, "CheckpointLoaderSimple", [], [("MODEL", [1]), ("CLIP", [2]), ("VAE", [3])], ["tiny.safetensors"]),
    node(10, SAMPLE, [("model", 1), ("clip", 2), ("vae", 3), ("text", None, "text"), ("seed", None, "seed")],
         [("IMAGE", [4, 5]), ("LATENT", [6])], ["a red fox", 42], pos=[100, 200], title="Sampler"),
    node(9, "SaveImage", [("images", 4)], [], ["fox"]),
    node(11, "PreviewImage", [("images", 5)]),
    node(12, "LatentUpscaleBy", [("samples", 6)], [("LATENT", [])], ["nearest-exact", 1.5]),
], [[1, 4, 0, 10, 0, "MODEL"], [2, 4, 1, 10, 1, "CLIP"], [3, 4, 2, 10, 2, "VAE"], [4, 10, 0, 9, 0, "IMAGE"],
    [5, 10, 0, 11, 0, "IMAGE"], [6, 10, 1, 12, 0, "LATENT"]], [TEXT_TO_IMAGE])

ONE_LEVEL_LINKS = {
    ("4", 0, "10:3", "model"), ("4", 1, "10:6", "clip"), ("4", 1, "10:7", "clip"), ("4", 2, "10:8", "vae"),
    ("10:6", 0, "10:3", "positive"), ("10:7", 0, "10:3", "negative"), ("10:5", 0, "10:3", "latent_image"),
    ("10:3", 0, "10:8", "samples"), ("10:8", 0, "9", "images"), ("10:8", 0, "11", "images"),
    ("10:3", 0, "12", "samples")}


def test_one_level_subgraph_is_flattened(registry):
    workflow = from_comfy_ui(ONE_LEVEL, registry)
    assert set(workflow.nodes) == {"4", "9", "11", "12", "10:3", "10:5", "10:6", "10:7", "10:8"}
    assert link_set(workflow) == ONE_LEVEL_LINKS  # the clip input feeds both prompts, the image two nodes
    assert {i: n.inputs for i, n in workflow.nodes.items() if i.startswith("10:")} == {
        "10:6": {"text": "a red fox"},  # the promoted widget's value, not the inner "inner prompt"
        "10:7": {"text": "blurry"},
        "10:5": {"width": 64, "height": 64, "batch_size": 1},
        "10:3": {"seed": 42, "steps": 2, "cfg": 8.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0},
        "10:8": {}}
    assert workflow.ui["seed_control"] == {"10:3": {"seed": "fixed"}}  # the inner node's own
    assert "pins" not in workflow.ui  # values of promoted widgets are literals, not links
    # placed at the instance: the inner nodes' top-left corner is the instance's position
    positions = {i: workflow.ui["nodes"][i]["pos"] for i in workflow.nodes if i.startswith("10:")}
    assert positions["10:6"] == [100.0, 200.0] and positions["10:3"] == [500.0, 200.0]
    assert positions["10:5"] == [100.0, 800.0]
    [frame] = workflow.ui["groups"]
    assert frame["title"] == "Sampler" and frame["bounding"][:2] == [90.0, 160.0]


def test_flattened_subgraph_validates_and_runs(tmp_path):
    from nodeflow.engine.executor import Executor
    from tests.factories import write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "models" / "checkpoints" / "tiny.safetensors")
    paths = Paths(models_dirs=(tmp_path / "models",), output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                  assets_dir=tmp_path / "no-assets")
    registry = Registry.load(paths)
    (tmp_path / "subgraph.json").write_text(json.dumps(ONE_LEVEL))
    workflow = load_workflow(tmp_path / "subgraph.json", registry)
    assert validate(workflow, registry, paths) == []
    result = Executor(registry, paths).run(workflow)
    [saved] = result.outputs["9"][0]["images"]
    assert Path(saved).name.startswith("fox")


def test_a_linked_input_wins_over_the_promoted_value(registry):
    data = copy.deepcopy(ONE_LEVEL)
    data["nodes"].append(node(13, "PrimitiveNode", [], [("STRING", [7])], ["from a primitive"]))
    data["nodes"][1]["inputs"][3]["link"] = 7
    data["links"].append([7, 13, 0, 10, 3, "STRING"])
    workflow = from_comfy_ui(data, registry)
    assert workflow.nodes["10:6"].inputs == {"text": "from a primitive"}
    assert workflow.nodes["10:3"].inputs["seed"] == 42


def test_instances_keep_the_inner_values_when_the_frontend_kept_them_there(registry):
    """Frontends that promote through properties.proxyWidgets save an empty widgets_values."""
    data = copy.deepcopy(ONE_LEVEL)
    data["nodes"][1]["widgets_values"] = []
    data["nodes"][1]["properties"]["proxyWidgets"] = [["6", "text"], ["3", "seed"]]
    workflow = from_comfy_ui(data, registry)
    assert workflow.nodes["10:6"].inputs == {"text": "inner prompt"} and workflow.nodes["10:3"].inputs["seed"] == 1


def test_instance_inputs_are_matched_by_name(registry):
    """The instance's inputs list may hold only some of the subgraph's inputs, in its own order."""
    data = copy.deepcopy(ONE_LEVEL)
    host = data["nodes"][1]
    host["inputs"] = [host["inputs"][2], host["inputs"][0], host["inputs"][1]]  # vae, model, clip
    data["links"][:3] = [[1, 4, 0, 10, 1, "MODEL"], [2, 4, 1, 10, 2, "CLIP"], [3, 4, 2, 10, 0, "VAE"]]
    assert link_set(from_comfy_ui(data, registry)) == ONE_LEVEL_LINKS


# Nesting: "Make latent" holds an EmptyLatentImage and an instance of "Flip"; the outer instance's
# promoted values (width, flip method) reach the inner nodes through both levels.
FLIP_DEFINITION = definition(FLIP, "Flip", [
    node(1, "LatentFlip", [("samples", 201), ("flip_method", 202, "flip_method")], [("LATENT", [203])],
         ["x-axis: vertically"], pos=[50, 50]),
], [(201, -10, 0, 1, 0), (202, -10, 1, 1, 1), (203, 1, 0, -20, 0)],
    inputs=[("samples", "LATENT"), ("flip_method", "COMBO")], outputs=[("LATENT", "LATENT")])
MAKE_DEFINITION = definition(MAKE, "Make latent", [
    node(1, "EmptyLatentImage", [("width", 301, "width")], [("LATENT", [302])], [512, 256, 1], pos=[0, 0]),
    node(2, FLIP, [("samples", 302), ("flip_method", 303, "flip_method")], [("LATENT", [304])], [], pos=[400, 0]),
], [(301, -10, 0, 1, 0), (302, 1, 0, 2, 0), (303, -10, 1, 2, 1), (304, 2, 0, -20, 0)],
    inputs=[("width", "INT"), ("flip", "COMBO")], outputs=[("LATENT", "LATENT")])
NESTED = ui([
    node(20, MAKE, [("width", None, "width"), ("flip", None, "flip")], [("LATENT", [1])], [128, "y-axis: horizontally"],
         pos=[1000, 1000]),
    node(21, "LatentUpscaleBy", [("samples", 1)], [("LATENT", [])], ["bilinear", 2.0]),
], [[1, 20, 0, 21, 0, "LATENT"]], [FLIP_DEFINITION, MAKE_DEFINITION])


def test_nested_subgraphs_are_flattened(registry):
    workflow = from_comfy_ui(NESTED, registry)
    assert set(workflow.nodes) == {"20:1", "20:2:1", "21"}
    assert link_set(workflow) == {("20:1", 0, "20:2:1", "samples"), ("20:2:1", 0, "21", "samples")}
    assert workflow.nodes["20:1"].inputs == {"width": 128, "height": 256, "batch_size": 1}
    assert workflow.nodes["20:2:1"].inputs == {"flip_method": "y-axis: horizontally"}
    assert workflow.ui["nodes"]["20:2:1"]["pos"] == [1400.0, 1000.0]


@pytest.mark.parametrize("mode, expected", [(4, "bypassed"), (2, "muted")])
def test_bypassed_and_muted_instances_carry_their_mode_inside(registry, mode, expected):
    data = ui([
        node(31, "EmptyLatentImage", [], [("LATENT", [1])], [64, 64, 1]),
        node(30, FLIP, [("samples", 1)], [("LATENT", [2])], ["y-axis: horizontally"], mode=mode),
        node(32, "LatentUpscaleBy", [("samples", 2)], [("LATENT", [])], ["bilinear", 2.0]),
    ], [[1, 31, 0, 30, 0, "LATENT"], [2, 30, 0, 32, 0, "LATENT"]], [FLIP_DEFINITION])
    workflow = from_comfy_ui(data, registry)
    assert workflow.nodes["30:1"].mode == expected and workflow.nodes["31"].mode == "normal"
    assert link_set(workflow) == {("31", 0, "30:1", "samples"), ("30:1", 0, "32", "samples")}
    routed = {(l.src, l.dst, l.dst_input) for l in active_links(workflow, registry)}
    assert routed == ({("31", "32", "samples")} if expected == "bypassed" else set())
    assert "30:1" not in to_comfy_api(workflow, registry)


def test_flattened_workflow_saves_and_reads_back_unchanged(tmp_path, registry):
    for data in (ONE_LEVEL, NESTED, json.loads((TEMPLATES / "image_anima_preview.json").read_text())):
        workflow = from_comfy_ui(data, registry)
        assert Workflow.from_dict(json.loads(dumps(workflow))) == workflow
        save_workflow(workflow, tmp_path / "flat.json")
        assert load_workflow(tmp_path / "flat.json", registry) == workflow


def test_flattening_leaves_the_data_alone_and_keeps_plain_workflows():
    before = json.dumps(NESTED)
    flat = flatten_subgraphs(NESTED)
    assert json.dumps(NESTED) == before
    assert "definitions" not in flat and {n["type"] for n in flat["nodes"]} == {"EmptyLatentImage", "LatentFlip",
                                                                             "PrimitiveNode", "LatentUpscaleBy"}
    plain = {"nodes": [node(1, "EmptyLatentImage", widgets=[8, 8, 1])], "links": []}
    assert flatten_subgraphs(plain) is plain


def test_missing_definitions_and_cycles_are_refused(registry):
    missing = ui([node(5, MAKE, title="My latent")], [], [FLIP_DEFINITION])
    with pytest.raises(WorkflowFormatError, match=f"node 5 \\('My latent'\\) is an instance of subgraph {MAKE}, "
                                                  "whose definition is missing"):
        from_comfy_ui(missing, registry)
    loop_a = definition(MAKE, "A", [node(1, FLIP)], [])
    loop_b = definition(FLIP, "B", [node(1, MAKE)], [])
    with pytest.raises(WorkflowFormatError, match=r"subgraph 'A' \(.*\) contains itself \('A' \(.*\) > 'B' .* > 'A'"):
        from_comfy_ui(ui([node(5, MAKE)], [], [loop_a, loop_b]), registry)
    with pytest.raises(WorkflowFormatError, match="subgraph 'A' .* malformed link"):
        from_comfy_ui(ui([node(5, MAKE)], [], [{**loop_a, "links": [{"id": 1}]}]), registry)


# A legacy group node ("workflow>NAME", extra.groupNodes): KSampler and VAEDecode, the decoder's
# samples linked inside. Its inputs are the inner nodes' free inputs in order, its widgets the
# inner widgets in order (the seed followed by its control value), its output the decoder's.
GROUP = {"nodes": [
    {**node(-1, "KSampler", [("model", None), ("positive", None), ("negative", None), ("latent_image", None)],
            [("LATENT", [])], [1, "fixed", 20, 8, "euler", "normal", 1], pos=[10, 10]), "index": 0},
    {**node(-1, "VAEDecode", [("samples", None), ("vae", None)], [("IMAGE", [])], pos=[400, 10]), "index": 1}],
    "links": [[0, 0, 1, 0, 9, "LATENT"], [None, 0, 0, 0, 4, "MODEL"]], "external": [[1, 0, "IMAGE"]]}
GROUP_WORKFLOW = {"nodes": [
    node(4, "CheckpointLoaderSimple", [], [("MODEL", [1]), ("CLIP", []), ("VAE", [5])], ["tiny.safetensors"]),
    node(6, "CLIPTextEncode", [("clip", None)], [("CONDITIONING", [2, 3])], ["a fox"]),
    node(5, "EmptyLatentImage", [], [("LATENT", [4])], [64, 64, 1]),
    node(40, "workflow>Sample and decode",
         [("model", 1), ("positive", 2), ("negative", 3), ("latent_image", 4), ("vae", 5)], [("IMAGE", [6])],
         [7, "increment", 12, 6.5, "dpmpp_2m", "karras", 0.8], pos=[500, 500]),
    node(9, "SaveImage", [("images", 6)], [], ["fox"])],
    "links": [[1, 4, 0, 40, 0, "MODEL"], [2, 6, 0, 40, 1, "CONDITIONING"], [3, 6, 0, 40, 2, "CONDITIONING"],
              [4, 5, 0, 40, 3, "LATENT"], [5, 4, 2, 40, 4, "VAE"], [6, 40, 0, 9, 0, "IMAGE"]],
    "groups": [], "config": {}, "extra": {"groupNodes": {"Sample and decode": GROUP}}, "version": 0.4}


def test_legacy_group_nodes_are_flattened(registry):
    workflow = from_comfy_ui(GROUP_WORKFLOW, registry)
    assert set(workflow.nodes) == {"4", "5", "6", "9", "40:0", "40:1"}
    assert link_set(workflow) == {
        ("4", 0, "40:0", "model"), ("6", 0, "40:0", "positive"), ("6", 0, "40:0", "negative"),
        ("5", 0, "40:0", "latent_image"), ("40:0", 0, "40:1", "samples"), ("4", 2, "40:1", "vae"),
        ("40:1", 0, "9", "images")}
    assert workflow.nodes["40:0"].inputs == {"seed": 7, "steps": 12, "cfg": 6.5, "sampler_name": "dpmpp_2m",
                                             "scheduler": "karras", "denoise": 0.8}  # the group's values
    assert workflow.ui["seed_control"]["40:0"] == {"seed": "increment"}
    old = copy.deepcopy(GROUP_WORKFLOW)  # frontends before 1.2.63 named the type "workflow/NAME"
    old["nodes"][3]["type"] = "workflow/Sample and decode"
    assert from_comfy_ui(old, registry) == workflow


# ----- ComfyUI's templates ----------------------------------------------------------------------

def template(name):
    return json.loads((TEMPLATES / f"{name}.json").read_text())


def test_anima_template_flattens_validates_and_keeps_its_values(tmp_path):
    """Every node type of it is nodeflow's; it validates with files of the names it asks for (nodeflow
    cannot load the Anima model family, so it is not run)."""
    for folder, name in [("text_encoders", "qwen_3_06b_base.safetensors"), ("vae", "qwen_image_vae.safetensors"),
                         ("diffusion_models", "anima-preview3-base.safetensors")]:
        (tmp_path / "models" / folder).mkdir(parents=True)
        (tmp_path / "models" / folder / name).write_bytes(b"")
    paths = Paths(models_dirs=(tmp_path / "models",))
    registry = Registry.load(paths)
    workflow = load_workflow(TEMPLATES / "image_anima_preview.json", registry)
    assert validate(workflow, registry, paths) == []
    types = {i: n.type for i, n in workflow.nodes.items()}
    assert types == {"46": "SaveImage", "60:45": "CLIPLoader", "60:15": "VAELoader", "60:8": "VAEDecode",
                     "60:28": "EmptyLatentImage", "60:12": "CLIPTextEncode", "60:19": "KSampler",
                     "60:11": "CLIPTextEncode", "60:44": "UNETLoader"}
    assert link_set(workflow) == {
        ("60:8", 0, "46", "images"), ("60:45", 0, "60:11", "clip"), ("60:45", 0, "60:12", "clip"),
        ("60:28", 0, "60:19", "latent_image"), ("60:44", 0, "60:19", "model"), ("60:12", 0, "60:19", "negative"),
        ("60:11", 0, "60:19", "positive"), ("60:19", 0, "60:8", "samples"), ("60:15", 0, "60:8", "vae")}
    # promoted through properties.proxyWidgets: the values are the inner nodes' own
    assert workflow.nodes["60:19"].inputs == {"seed": 875817230929465, "steps": 30, "cfg": 4.0,
                                              "sampler_name": "er_sde", "scheduler": "simple", "denoise": 1.0}
    assert workflow.nodes["60:11"].inputs["text"].startswith("masterpiece, best quality")
    assert workflow.nodes["60:12"].title == "CLIP Text Encode (Negative Prompt)"


def test_depth_t2i_adapter_template_flattens_with_the_instance_values(registry):
    """Its "Lotus Depth" subgraph needs LotusConditioning, which nodeflow lacks: the import says so,
    naming the flattened node; the flattening itself is checked on the JSON."""
    data = template("depth_t2i_adapter")
    with pytest.raises(UnknownNodeType, match="node 48:96: unknown node type 'LotusConditioning'"):
        from_comfy_ui(data, registry)
    flat = flatten_subgraphs(data, registry)
    nodes = {str(n["id"]): n for n in flat["nodes"]}
    inner = {i: n["type"] for i, n in nodes.items() if i.startswith("48:") and n["type"] != "PrimitiveNode"}
    assert inner == {"48:92": "SamplerCustomAdvanced", "48:94": "BasicGuider", "48:95": "BasicScheduler",
                     "48:96": "LotusConditioning", "48:97": "VAEEncode", "48:93": "DisableNoise",
                     "48:98": "VAEDecode", "48:99": "ImageInvert", "48:89": "VAELoader", "48:87": "UNETLoader",
                     "48:101": "SetFirstSigma", "48:100": "KSamplerSelect"}
    links = {(str(l[1]), l[2], str(l[3]), l[4]) for l in flat["links"]}
    assert {("20", 0, "48:97", 0), ("48:99", 0, "45", 3), ("48:99", 0, "49", 0)} <= links  # in; out, used twice
    assert not any("48" in (o, t) for o, _, t, _ in links)
    # the instance's widgets_values (vae, unet, sigma, sampler) reach the widgets they were promoted from
    primitives = {(nodes[str(l[3])]["type"], nodes[str(l[3])]["inputs"][l[4]]["widget"]["name"]):
                  nodes[str(l[1])]["widgets_values"]
                  for l in flat["links"] if nodes[str(l[1])]["type"] == "PrimitiveNode"}
    assert primitives == {("VAELoader", "vae_name"): ["vae-ft-mse-840000-ema-pruned.safetensors"],
                          ("UNETLoader", "unet_name"): ["lotus-depth-d-v1-1.safetensors"],
                          ("SetFirstSigma", "sigma"): [10000], ("KSamplerSelect", "sampler_name"): ["euler"]}


def test_nested_template_flattens(registry):
    """flux_depth_lora_example: "Depth to Image" holds "Lotus Depth". nodeflow lacks FluxGuidance,
    InstructPixToPixConditioning and LotusConditioning, so only the flattening is checked."""
    data = template("flux_depth_lora_example")
    with pytest.raises(UnknownNodeType, match="unknown node type 'FluxGuidance'"):
        from_comfy_ui(data, registry)
    flat = flatten_subgraphs(data, registry)
    nodes = {str(n["id"]): n for n in flat["nodes"]}
    assert {i for i in nodes if i.startswith("150:41:")} == {f"150:41:{i}" for i in (87, 89, 92, 93, 94, 95, 96, 97, 98,
                                                                                      99, 100, 101)}
    assert nodes["150:43"]["mode"] == 4  # bypassed inside the definition, and still
    links = {(str(l[1]), l[2], str(l[3]), l[4]) for l in flat["links"]}
    assert {("17", 0, "150:107", 0),            # root -> outer subgraph
            ("150:107", 0, "150:41:97", 0),     # outer -> inner subgraph's input
            ("150:41:99", 0, "150:35", 3),      # inner subgraph's output -> outer
            ("150:8", 0, "9", 0)} <= links      # outer subgraph's output -> root
    ends = {end for o, _, t, _ in links for end in (o, t)}
    assert ends <= set(nodes) and not {"150", "150:41"} & ends
