"""Every nodeflow node that ComfyUI also has declares ComfyUI's inputs: names in order, types,
optional or not, defaults, numeric ranges, combo options; and ComfyUI's output types.

The reference is tests/data/comfy/core_nodes.json, ComfyUI's own declarations (its server's
/object_info, core nodes only; written by tests/data/comfy/make_node_table.py, see there and the
README in that folder for the ComfyUI version). Deliberate differences are listed in DIFFERENCES
with the reason; anything else fails.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nodeflow.cli import describe_node
from nodeflow.engine.registry import Registry

TABLE = json.loads((Path(__file__).parent / "data" / "comfy" / "core_nodes.json").read_text(encoding="utf-8"))

#: (node, input, what) -> why nodeflow differs on purpose
NEWER = "nodeflow follows a newer ComfyUI than the table's, which added these"
GPU_NAMES = ("ComfyUI's *_gpu sampler names are read as the samplers they are when a workflow is imported "
             "(nodeflow.formats.comfy.SAMPLER_ALIASES: both draw the same CPU noise here), so the list omits them; "
             "exp_heun_2_x0(_sde) are in a newer ComfyUI's list")
DIFFERENCES: dict[tuple[str, str, str], str] = {
    ("CLIPLoader", "type", "options"): NEWER + " (types of other families, refused by name when loaded)",
    ("DualCLIPLoader", "type", "options"): NEWER,
    ("KSampler", "sampler_name", "options"): GPU_NAMES,
    ("KSamplerAdvanced", "sampler_name", "options"): GPU_NAMES,
    ("KSamplerSelect", "sampler_name", "options"): GPU_NAMES,
    ("ModelSamplingContinuousEDM", "sampling", "options"): "cosmos_rflow is the Cosmos video family's "
                                                           "sampling, a family nodeflow does not load",
    ("ModelSamplingDiscrete", "sampling", "options"): "img_to_img is for an image-to-image model family "
                                                      "nodeflow does not load",
    ("SaveImage", "*", "names"): "nodeflow's optional embed_workflow (off: no workflow in the PNG) comes after "
                                 "ComfyUI's inputs; ComfyUI workflows never set it and get its default",
    ("VAELoader", "vae_name", "options"): "ComfyUI lists taesd/taesdxl/taesd3/taef1 only when their decoder "
                                          "files are installed, and pixel_space for pixel models; nodeflow "
                                          "lists the VAE files it finds",
    ("ImageScaleToTotalPixels", "*", "names"): NEWER + " (resolution_steps, default 1)",
    ("ImageFromBatch", "batch_index", "min"): NEWER + " (negative indices count from the end)",
    ("ImageFromBatch", "batch_index", "max"): NEWER,
    ("SaveImage", "filename_prefix", "default"): "nodeflow's images are named nodeflow_00001_.png by default",
    ("VAELoader", "vae_name", "default"): "the first file found (ComfyUI's first entry was taesd)",
}


def ours() -> dict[str, dict]:
    return {spec.id: describe_node(spec) for spec in Registry.load(entry_point_packs=False)}


OURS = ours()
SHARED = sorted(set(OURS) & set(TABLE))


def same_number(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def input_problems(node: str, mine: dict, theirs: dict) -> list[str]:
    """What differs between one of our inputs and ComfyUI's."""
    problems = []
    name = theirs["name"]
    is_combo = theirs["type"] == "COMBO"
    if (mine["type"] == "CHOICE") != is_combo or (not is_combo and mine["type"] != theirs["type"]):
        problems.append(("type", f"type {mine['type']} (ComfyUI {theirs['type']})"))
    if mine["optional"] != theirs["optional"]:
        problems.append(("optional", f"optional {mine['optional']} (ComfyUI {theirs['optional']})"))
    if "options" in theirs:
        expected_default = theirs.get("default", theirs["options"][0] if theirs["options"] else None)
        if mine.get("choices") != theirs["options"]:
            missing = [o for o in theirs["options"] if o not in (mine.get("choices") or [])]
            extra = [o for o in (mine.get("choices") or []) if o not in theirs["options"]]
            problems.append(("options", f"options differ: missing {missing}, extra {extra}"
                                        + ("" if missing or extra else ", order differs")))
        if mine.get("default") != expected_default:
            problems.append(("default", f"default {mine.get('default')!r} (ComfyUI {expected_default!r})"))
    else:
        for key in ("default", "min", "max"):
            if key in theirs and not same_number(mine.get(key), theirs[key]):
                problems.append((key, f"{key} {mine.get(key)!r} (ComfyUI {theirs[key]!r})"))
    return [f"{node}.{name}: {text}" for what, text in problems if (node, name, what) not in DIFFERENCES]


def node_problems(node: str) -> list[str]:
    mine, theirs = OURS[node], TABLE[node]
    problems = []
    names, expected = [i["name"] for i in mine["inputs"]], [i["name"] for i in theirs["inputs"]]
    if names != expected and (node, "*", "names") not in DIFFERENCES:
        problems.append(f"{node}: inputs {names} (ComfyUI {expected})")
    by_name = {i["name"]: i for i in mine["inputs"]}
    for entry in theirs["inputs"]:
        if entry["name"] in by_name:
            problems += input_problems(node, by_name[entry["name"]], entry)
    outputs = [o["type"] for o in mine["outputs"]]
    if outputs != theirs["outputs"] and (node, "*", "outputs") not in DIFFERENCES:
        problems.append(f"{node}: outputs {outputs} (ComfyUI {theirs['outputs']})")
    return problems


@pytest.mark.parametrize("node", SHARED)
def test_declaration_is_comfyuis(node):
    assert node_problems(node) == []


def test_the_table_covers_the_nodes_that_matter():
    assert len(SHARED) >= 100 and {"KSampler", "CheckpointLoaderSimple", "SamplerCustomAdvanced"} <= set(SHARED)
    assert {"HypernetworkLoader", "CLIPVisionLoader", "CLIPVisionEncode", "StyleModelLoader",
            "StyleModelApply", "unCLIPCheckpointLoader", "unCLIPConditioning", "GLIGENLoader",
            "GLIGENTextBoxApply"} <= set(SHARED)
    assert {"SetUnionControlNetType", "ControlNetInpaintingAliMamaApply"} <= set(SHARED)


def test_the_comparison_sees_a_wrong_default():
    entry = dict(next(i for i in TABLE["KSampler"]["inputs"] if i["name"] == "cfg"))
    wrong = dict(next(i for i in OURS["KSampler"]["inputs"] if i["name"] == "cfg"), default=7.0)
    assert input_problems("KSampler", wrong, entry) == ["KSampler.cfg: default 7.0 (ComfyUI 8.0)"]
