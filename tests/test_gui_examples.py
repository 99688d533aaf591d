"""File > Examples and the missing-models dialog (issue 19) in a real window under Xvfb, driven
by xdotool; the lists behind them (examples.py) without a display."""

import json
from pathlib import Path

import pytest

from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import NodeInstance, Workflow
from nodeflow.formats import load_workflow
from nodeflow.gui.examples import list_examples, missing_models, project_examples_dir
from nodeflow.runtime.paths import Paths
from tests.test_gui_window import SCENARIO_HEAD
from tests.test_gui_window_new_user import HELPERS

COMFY_API = {  # a ComfyUI API export naming a checkpoint and a LoRA this machine does not have
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "dreamshaper_8.safetensors"}},
    "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "strength_model": 1.0,
                                                 "strength_clip": 1.0, "lora_name": "detail_tweaker.safetensors"}},
}


def test_examples_are_the_workflows_with_their_readme_descriptions(tmp_path):
    shipped = list_examples(project_examples_dir())
    assert {e.path.name for e in shipped} == {p.name for p in project_examples_dir().glob("*.json")}
    assert all(e.description != e.path.name for e in shipped)  # every one is described in the README
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "README.md").write_text("# Examples\n\n- `b.json`: the second one\nsome text\n")
    assert [e.label for e in list_examples(tmp_path)] == ["a.json", "b.json: the second one"]


def test_missing_models_name_each_file_and_its_folder(tmp_path):
    (tmp_path / "models" / "loras").mkdir(parents=True)
    (tmp_path / "models" / "loras" / "detail_tweaker.safetensors").write_bytes(b"")
    paths = Paths(models_dirs=(tmp_path / "models",), assets_dir=tmp_path / "no-assets")
    registry = Registry.load(paths)
    (tmp_path / "api.json").write_text(json.dumps(COMFY_API))
    workflow = load_workflow(tmp_path / "api.json", registry)
    assert [str(m) for m in missing_models(workflow, registry, paths)] == [
        f"dreamshaper_8.safetensors -> {tmp_path / 'models' / 'checkpoints'} (node 4, ckpt_name)"]



def test_a_model_named_the_windows_way_is_not_missing(tmp_path):
    """The loader finds "sd15\\x.safetensors" in models/checkpoints/sd15/ (workflows made on
    Windows): the missing-models list must not name it."""
    (tmp_path / "models" / "checkpoints" / "sd15").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "sd15" / "x.safetensors").write_bytes(b"")
    paths = Paths(models_dirs=(tmp_path / "models",), assets_dir=tmp_path / "no-assets")
    registry = Registry.load(paths)
    workflow = Workflow({"4": NodeInstance("4", "CheckpointLoaderSimple", {"ckpt_name": "sd15\\x.safetensors"})})
    assert paths.resolve_model("checkpoints", "sd15\\x.safetensors").name == "x.safetensors"
    assert missing_models(workflow, registry, paths) == []
    workflow.nodes["4"].inputs["ckpt_name"] = "sd15\\y.safetensors"
    assert [m.file for m in missing_models(workflow, registry, paths)] == ["sd15\\y.safetensors"]

EXAMPLES = r"""
from nodeflow.gui.recent import RecentFiles

comfy = tmp / "from_comfy.json"
comfy.write_text(sys.argv[2])
RecentFiles(tmp / "recent.json").add(comfy)
open_window(editor_for(document))

def submenu_item(menu, index):  # entry ``index`` of a submenu of the File menu, opened by hovering
    drive(["mousemove", *menu_point("file_menu")], ["click", 1])
    x, y = menu_point("file_menu", menu)  # known once the menu has been drawn open
    drive(["mousemove", x, y], ["mousemove", x + 150, y], ["mousemove", x + 330, y])
    drive(["mousemove", x + 330, y + 18 * index], ["click", 1])

labels = [dpg.get_item_label(item) for item in dpg.get_item_children("examples_menu", 1)]
submenu_item("examples_menu", labels.index("shapes_no_model.json: image and mask nodes only, runs without any model weights"))
seen = {"labels": labels, "opened": str(app.document.path), "nodes": len(app.document.workflow.nodes),
        "dialog_after_example": dpg.does_item_exist("missing_models")}
recent = [dpg.get_item_label(item) for item in dpg.get_item_children("recent_menu", 1)]
submenu_item("recent_menu", recent.index(str(comfy.resolve())))  # the ComfyUI file (after the example)
seen["opened_comfy"] = dpg.get_value("status")
seen["dialog"] = dpg.does_item_exist("missing_models") and dpg.is_item_shown("missing_models")
seen["lines"] = [dpg.get_value(f"missing_model_{i}") for i in range(2) if dpg.does_item_exist(f"missing_model_{i}")]
drive(["mousemove", *centre("missing_models_ok")], ["click", 1])
seen["closed"] = not dpg.does_item_exist("missing_models")
report(**seen)
"""


@pytest.mark.gui
def test_file_examples_opens_one_and_a_comfy_file_lists_its_missing_models(display, tmp_path):
    """File > Examples lists every example with its description and a click opens it (shapes: no
    models needed, no dialog); opening (Open Recent) a ComfyUI export whose checkpoint and LoRA are
    missing shows a dialog naming each file and the folder it belongs in; OK closes it."""
    import subprocess
    import sys

    from tests.project import ROOT

    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO_HEAD + HELPERS + EXAMPLES)
    out = subprocess.run([sys.executable, str(script), str(tmp_path), json.dumps(COMFY_API)], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["labels"]) == len(list(project_examples_dir().glob("*.json"))), result["labels"]
    assert "txt2img.json: text to image, the default workflow (the embedded model)" in result["labels"]
    assert Path(result["opened"]).name == "shapes_no_model.json" and result["nodes"] > 10, result
    assert not result["dialog_after_example"]
    assert result["opened_comfy"].startswith("opened") and result["opened_comfy"].endswith("from_comfy.json"), result
    assert result["dialog"], result
    assert result["lines"] == ["dreamshaper_8.safetensors  ->  models/checkpoints/",
                               "detail_tweaker.safetensors  ->  models/loras/"], result["lines"]
    assert result["closed"]
