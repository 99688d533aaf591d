"""Hostile and careless workflow input (issue 17): one clean line and exit 2, never a traceback,
bounded time and memory. Each case is a regression test named after what was found."""

import json

import pytest
from PIL import Image, PngImagePlugin

from nodeflow import cli
from nodeflow.formats import json_text

EXIT_USER_ERROR = 2


def tiny_workflow(nodes: dict, links: list) -> dict:
    return {"format": "nodeflow-workflow", "version": 1, "nodes": nodes, "links": links}


def image_chain(first_id: str = "1", save_id: str = "9") -> dict:
    """EmptyImage -> SaveImage: the smallest workflow that saves something."""
    return tiny_workflow(
        {first_id: {"type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
         save_id: {"type": "SaveImage", "inputs": {"filename_prefix": "out"}}},
        [{"from": [first_id, 0], "to": [save_id, "images"]}])


@pytest.fixture
def run(tmp_path, capsys, monkeypatch):
    """``run(command, text_or_data)``: writes the workflow, runs ``nodeflow COMMAND`` in-process,
    returns (exit code, stderr)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))

    def call(command: str, workflow, name: str = "wf.json"):
        path = tmp_path / name
        if isinstance(workflow, bytes):
            path.write_bytes(workflow)
        else:
            path.write_text(workflow if isinstance(workflow, str) else json.dumps(workflow), encoding="utf-8")
        args = [command, str(path), "--quiet"]
        if command == "run":
            args += ["--output-dir", str(tmp_path / "out"), "--device", "cpu"]
        code = cli.main(args)
        return code, capsys.readouterr().err

    return call


@pytest.mark.parametrize("command", ["validate", "run"])
def test_100000_nested_lists_are_refused(run, command):
    code, err = run(command, "[" * 100_000 + "]" * 100_000)
    assert code == EXIT_USER_ERROR and "nests more than 100 levels deep" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_5000_deep_input_value_is_refused(run, command):
    text = json.dumps(image_chain()).replace('"color": 0', '"color": ' + "[" * 5000 + "]" * 5000)
    code, err = run(command, text)
    assert code == EXIT_USER_ERROR and "nests more than 100 levels deep" in err and "Traceback" not in err


def test_a_deep_value_inside_a_png_workflow_chunk_is_refused(run, tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "[" * 5000 + "]" * 5000)
    Image.new("RGB", (4, 4)).save(tmp_path / "deep.png", pnginfo=info)
    code, err = run("validate", (tmp_path / "deep.png").read_bytes(), name="wf.png")
    assert code == EXIT_USER_ERROR and "'prompt' chunk nests more than 100 levels" in err and "Traceback" not in err


def test_a_png_prompt_chunk_with_a_bad_meta_is_a_format_error(run, tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}, "_meta": "x"}}))
    Image.new("RGB", (4, 4)).save(tmp_path / "meta.png", pnginfo=info)
    code, err = run("validate", (tmp_path / "meta.png").read_bytes(), name="wf.png")
    assert code == EXIT_USER_ERROR and "ComfyUI API workflow is malformed" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_seed_with_5000_digits_is_refused(run, command):
    text = json.dumps(image_chain()).replace('"color": 0', '"color": ' + "9" * 5000)
    code, err = run(command, text)
    assert code == EXIT_USER_ERROR and "a number with 5000 digits" in err and "Traceback" not in err


def test_a_key_named_twice_is_refused(run):
    text = json.dumps(image_chain()).replace('"width": 8,', '"width": 8, "width": 16,')
    code, err = run("validate", text)
    assert code == EXIT_USER_ERROR and "names the key 'width' twice" in err


@pytest.mark.parametrize("odd_id", ["\u00b2", "7" * 5000], ids=["superscript-two", "5000-digits"])
def test_odd_node_ids_validate_and_run_alike(run, tmp_path, odd_id):
    workflow = image_chain(first_id=odd_id)
    assert run("validate", workflow)[0] == 0
    code, err = run("run", workflow)
    assert code == 0 and "Traceback" not in err
    assert (tmp_path / "out" / "out_00001_.png").is_file()


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_chain_of_2000_bypassed_nodes_is_routed_through(run, tmp_path, command):
    workflow = image_chain()
    chain = [str(100 + i) for i in range(2000)]
    for node_id in chain:
        workflow["nodes"][node_id] = {"type": "ImageInvert", "inputs": {}, "mode": "bypassed"}
    ends = ["1", *chain, "9"]
    workflow["links"] = [{"from": [a, 0], "to": [b, "image" if b != "9" else "images"]}
                         for a, b in zip(ends, ends[1:])]
    code, err = run(command, workflow)
    assert code == 0 and "Traceback" not in err
    if command == "run":  # every invert bypassed: the saved image is EmptyImage's black
        assert Image.open(tmp_path / "out" / "out_00001_.png").getextrema() == ((0, 0), (0, 0), (0, 0))


def test_a_workflow_file_over_the_size_limit_is_refused_unread(run, monkeypatch):
    monkeypatch.setattr(json_text, "MAX_BYTES", 1000)
    code, err = run("validate", json.dumps(image_chain()) + " " * 2000)
    assert code == EXIT_USER_ERROR and "too large for a workflow" in err
