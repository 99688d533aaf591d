"""Hostile and careless workflow input (issue 17): one clean line and exit 2, never a traceback,
bounded time and memory. Each case is a regression test named after what was found."""

import json

import pytest
from PIL import Image, PngImagePlugin

from nodeflow import cli
from nodeflow.formats import json_text
from tests.project import ROOT

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
    """``run(command, text_or_data, config=SETTINGS_FILE, extra=[ARGS])``: writes the workflow,
    runs ``nodeflow COMMAND`` in-process, returns (exit code, stderr)."""
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # gettempdir() caches $TMPDIR

    def call(command: str, workflow, name: str = "wf.json", config=None, extra: list[str] = ()):
        path = tmp_path / name
        if isinstance(workflow, bytes):
            path.write_bytes(workflow)
        else:
            path.write_text(workflow if isinstance(workflow, str) else json.dumps(workflow), encoding="utf-8")
        args = [command, str(path), "--quiet"]
        if config is not None:
            args += ["--config", str(config)]
        if command == "run":
            args += ["--output-dir", str(tmp_path / "out"), "--device", "cpu"]
        code = cli.main(args + list(extra))
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


def png_with_chunks(path, chunks: list[tuple[bytes, bytes]], width: int = 65535, height: int = 65535):
    """A PNG whose header claims ``width`` x ``height`` but holds a few bytes of pixels: a
    decompression bomb for anything that decodes it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = b"".join(chunk(kind, data) for kind, data in chunks)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def test_a_workflow_png_with_a_lying_65535_pixel_header_is_read_for_its_text_only(run, tmp_path):
    text = json.dumps(image_chain()).encode("latin-1")
    png = png_with_chunks(tmp_path / "bomb.png", [(b"tEXt", b"nodeflow\0" + text)])
    code, err = run("validate", png.read_bytes(), name="wf.png")
    assert code == 0 and "Traceback" not in err and "DecompressionBomb" not in err


def test_compressed_text_chunks_over_1_mb_are_read(run, tmp_path):
    import zlib

    workflow = image_chain()
    workflow["ui"] = {"notes": "x" * 3_000_000}  # compresses to a few KB, inflates to 3 MB
    itxt = b"nodeflow\0\x01\x00\0\0" + zlib.compress(json.dumps(workflow).encode("utf-8"))
    png = png_with_chunks(tmp_path / "big.png", [(b"iTXt", itxt)], width=4, height=4)
    code, err = run("validate", png.read_bytes(), name="wf.png")
    assert code == 0 and "Traceback" not in err


def test_a_text_chunk_inflating_beyond_the_limit_is_refused(run, tmp_path, monkeypatch):
    import zlib

    from nodeflow.formats import png_text

    monkeypatch.setattr(png_text, "MAX_TEXT_BYTES", 100_000)
    ztxt = b"prompt\0\x00" + zlib.compress(b"[" * 1_000_000)
    png = png_with_chunks(tmp_path / "zbomb.png", [(b"zTXt", ztxt)], width=4, height=4)
    code, err = run("validate", png.read_bytes(), name="wf.png")
    assert code == EXIT_USER_ERROR and "text chunks hold more than" in err and "Traceback" not in err


def test_a_workflow_too_large_to_read_back_is_saved_without_its_layout(run, tmp_path, monkeypatch, caplog):
    from nodeflow.formats import png

    monkeypatch.setattr(png, "MAX_EMBEDDED_BYTES", 50_000)
    workflow = image_chain()
    workflow["ui"] = {"notes": "x" * 100_000}
    code, err = run("run", workflow)
    saved = tmp_path / "out" / "out_00001_.png"
    assert code == 0 and saved.is_file()
    assert "editor layout" in caplog.text and "saved without it" in caplog.text
    assert run("validate", saved.read_bytes(), name="again.png")[0] == 0  # what was written reads back
    from nodeflow.formats.png import read_text_chunks

    assert "notes" not in read_text_chunks(saved)["nodeflow"]


def test_embedding_a_workflow_reads_its_links_a_bounded_number_of_times(monkeypatch):
    """5k / 20k / 50k nodes took 0.5 / 5.1 / 36 s: the ComfyUI API export scanned every link once
    per node. Counted, not timed (tests/bench/bench_embedding.py prints the times): the links are
    walked a fixed number of times, whatever the node count."""
    from nodeflow.engine.registry import Registry
    from nodeflow.engine.workflow import Link, NodeInstance, Workflow
    from nodeflow.formats import comfy, png

    class CountingList(list):
        walks = 0

        def __iter__(self):
            CountingList.walks += 1
            return super().__iter__()

    real_active_links = comfy.active_links
    monkeypatch.setattr(comfy, "active_links", lambda *args: CountingList(real_active_links(*args)))
    registry = Registry.load()
    for n in (50, 500):
        CountingList.walks = 0
        nodes = {"0": NodeInstance("0", "EmptyImage", {"width": 8, "height": 8, "batch_size": 1, "color": 0})}
        nodes.update({str(i): NodeInstance(str(i), "ImageInvert") for i in range(1, n)})
        png.workflow_text_chunks(Workflow(nodes, [Link(str(i - 1), 0, str(i), "image") for i in range(1, n)]),
                                 registry, (8, 8))
        assert CountingList.walks <= 3, (n, CountingList.walks)


@pytest.mark.parametrize("value", ["inf", "nan", "1e308", "-1"])
def test_settings_cache_sizes_must_be_finite_gib(tmp_path, value):
    from nodeflow.runtime.config import ConfigError, load_config

    path = tmp_path / "nodeflow.toml"
    path.write_text(f"[cache]\ncpu = {value}\n")
    with pytest.raises(ConfigError, match=r"\[cache\] cpu must be a number of GiB from 0 to"):
        load_config(path)


def test_a_100000_deep_settings_array_is_a_config_error(tmp_path):
    from nodeflow.runtime.config import ConfigError, load_config

    path = tmp_path / "nodeflow.toml"
    path.write_text("models = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)


def test_custom_nodes_that_exit_or_raise_base_exception_are_skipped(tmp_path, capsys):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (folder / "raises.py").write_text("raise BaseException('odd')\n")
    (folder / "fine.py").write_text(
        "from nodeflow.spec import INT, Int, Output, node\n"
        "@node('FineNode', inputs=[Int('x', 1)], outputs=[Output(INT)])\n"
        "def fine(x: int):\n    return (x,)\n")
    assert cli.main(["nodes", "--custom-nodes", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "FineNode" in captured.out and "Traceback" not in captured.err
    assert "exits.py skipped: SystemExit: 3" in captured.err and "raises.py skipped: BaseException: odd" in captured.err


def test_a_nul_pulled_into_a_filename_prefix_from_a_muted_node_is_a_clean_error(run, tmp_path):
    workflow = image_chain()
    workflow["nodes"]["5"] = {"type": "EmptyImage", "mode": "muted", "title": "Note",
                              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}
    workflow["nodes"]["5"]["inputs"]["text"] = "a\u0000b"
    workflow["nodes"]["9"]["inputs"]["filename_prefix"] = "x_%Note.text%"
    code, err = run("run", workflow)
    assert code != 0 and "NUL character" in err and "Traceback" not in err and "embedded null byte" not in err


def test_a_prefix_naming_a_hidden_file_is_refused(run):
    workflow = image_chain()
    workflow["nodes"]["9"]["inputs"]["filename_prefix"] = "."
    code, err = run("validate", workflow)
    assert code == EXIT_USER_ERROR and "would make hidden files" in err


def test_load_image_refuses_a_decompression_bomb_before_decoding(tmp_path, monkeypatch):
    """A 12000 x 12000 PNG of a few hundred KB reached 4.3 GB RSS: refused from its header."""
    import resource
    import zlib

    from nodeflow.errors import ModelFileError
    from nodeflow.image.files import load_image

    row = b"\0" + b"\0" * (12000 * 3)
    bomb = png_with_chunks(tmp_path / "bomb.png", [], width=12000, height=12000)
    data = bomb.read_bytes().replace(zlib.compress(b"\0" * 64), zlib.compress(row * 12000, 9))
    bomb.write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelFileError, match=r"bomb.png: cannot read the image \(12000x12000 pixels is over the limit"):
        load_image(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing decoded
    small = tmp_path / "small.png"  # the limit is configurable and read at each load
    Image.new("RGB", (20, 10)).save(small)
    monkeypatch.setenv("NODEFLOW_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(ModelFileError, match="20x10 pixels is over the limit of 100 pixels"):
        load_image(small)
    monkeypatch.setenv("NODEFLOW_MAX_IMAGE_PIXELS", "200")
    assert load_image(small)[0].shape == (1, 10, 20, 3)


def test_a_planted_previews_symlink_is_refused_and_its_target_untouched(run, tmp_path):
    import os

    victim = tmp_path / "victim"
    (victim / "session-old").mkdir(parents=True)
    (victim / "preview_old.png").write_bytes(b"keep")
    for entry in (victim / "session-old", victim / "preview_old.png"):
        os.utime(entry, (0, 0))  # older than any stale limit
    temp = tmp_path / "tmp" / f"nodeflow-{os.getuid()}"
    temp.mkdir()
    (temp / "previews").symlink_to(victim)
    code, err = run("run", image_chain())
    assert code == EXIT_USER_ERROR and "not a folder of ours" in err and "Traceback" not in err
    assert (victim / "session-old").is_dir() and (victim / "preview_old.png").read_bytes() == b"keep"


def test_cleaning_previews_never_follows_links_and_the_folder_is_private(run, tmp_path):
    import os
    import stat

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep")
    previews = tmp_path / "tmp" / f"nodeflow-{os.getuid()}" / "previews"
    previews.mkdir(parents=True)
    (previews / "session-planted").symlink_to(victim, target_is_directory=True)
    os.utime(previews / "session-planted", (0, 0), follow_symlinks=False)
    assert run("run", image_chain())[0] == 0
    assert (victim / "precious").read_text() == "keep"
    assert stat.S_IMODE(previews.parent.stat().st_mode) == 0o700


def test_a_seed_above_its_maximum_names_the_maximum_in_full(run):
    workflow = tiny_workflow({"1": {"type": "KSampler", "inputs": {"seed": 2**64}}}, [])
    code, err = run("validate", workflow)
    assert code == EXIT_USER_ERROR and "above the maximum 18446744073709551615" in err and "e+19" not in err


def test_a_comfyui_prompt_request_body_reads_as_its_workflow(run, tmp_path):
    api = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
           "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "out", "images": ["1", 0]}}}
    code, err = run("run", {"prompt": api, "client_id": "abc"})
    assert code == 0, err
    assert (tmp_path / "out" / "out_00001_.png").is_file()


def test_partial_files_of_killed_saves_are_cleaned_at_the_next_save(run, tmp_path):
    import os

    out = tmp_path / "out"
    out.mkdir()
    old, fresh = out / ".saving-0123456789abcdef.png", out / ".saving-fedcba9876543210.png"
    old.write_bytes(b"half")
    fresh.write_bytes(b"in progress")
    os.utime(old, (0, 0))
    assert run("run", image_chain())[0] == 0
    assert not old.exists() and fresh.exists() and (out / "out_00001_.png").is_file()


def test_a_prompt_of_100000_nested_parentheses_is_one_clean_error(run, tmp_path):
    """It took 80 s, then raised RecursionError: now refused before any parsing work."""
    from nodeflow.text.prompt_weights import MAX_NESTING, PromptError, parse_weights

    with pytest.raises(PromptError, match="nests parentheses 100000 deep"):
        parse_weights("(" * 100_000 + "x" + ")" * 100_000)
    assert parse_weights("(" * MAX_NESTING + "x" + ")" * MAX_NESTING) == [("x", pytest.approx(1.1 ** MAX_NESTING))]
    workflow = json.loads((ROOT / "workflows" / "txt2img.json").read_text())
    workflow["nodes"]["6"]["inputs"]["text"] = "(" * 100_000 + "a red circle" + ")" * 100_000
    code, err = run("run", workflow)
    assert code == EXIT_USER_ERROR and "node 6 (CLIPTextEncode)" in err and "nests parentheses" in err
    assert "Traceback" not in err and "RecursionError" not in err


def safetensors_with_header(path, header, data: bytes = b""):
    text = header if isinstance(header, str) else json.dumps(header)
    raw = text.encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


@pytest.mark.parametrize("header, problem", [
    ({"w": {"dtype": "F32", "shape": [30000, 30000], "data_offsets": [0, 0]}}, "needs 3600000000 bytes"),
    ([1, 2, 3], "not an object"),
    ({"w": 5}, "entry 'w': not an object"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}}, "bad data_offsets"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "needs 8 bytes, its offsets hold 4"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "bad shape"),
    ({"w": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, "unknown dtype"),
    ('{"__metadata__": ' + "[" * 100_000 + "]" * 100_000 + "}", "corrupt safetensors header"),
    ({"__metadata__": {"a": 1}}, "__metadata__ must map names to text"),
], ids=["30000x30000-at-0-0", "a-list", "a-number", "string-offsets", "shape-vs-bytes", "negative-shape",
        "unknown-dtype", "100k-deep-metadata", "metadata-not-text"])
def test_lying_safetensors_headers_are_refused_before_allocating(tmp_path, header, problem):
    import resource

    from nodeflow.errors import ModelFileError
    from nodeflow.loading.files import read_state_dict

    path = safetensors_with_header(tmp_path / "liar.safetensors", header, b"\0" * 4)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelFileError, match="liar.safetensors") as raised:
        read_state_dict(path)
    assert problem in str(raised.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_a_sampling_run_that_cannot_fit_is_refused_with_the_figures(run):
    """EmptyLatentImage 4096x4096 batch 64 passed validation and KSampler allocated until it died."""
    workflow = json.loads((ROOT / "workflows" / "txt2img.json").read_text())
    workflow["nodes"]["5"]["inputs"].update(width=4096, height=4096, batch_size=64)
    code, err = run("run", workflow)
    assert code == EXIT_USER_ERROR and "node 3 (KSampler)" in err and "Traceback" not in err
    assert "sampling 64 images of 4096x4096 needs about" in err and "GiB are free" in err


def test_an_empty_latent_larger_than_memory_is_refused():
    from nodeflow.errors import NodeInputError
    from nodeflow.runtime.devices import fits_in_memory
    from nodeflow_nodes.latent import empty_latent_image

    assert not fits_in_memory(4 * 4096 * 4 * 2048 * 2048)[0]  # 256 GiB: more than this machine has
    with pytest.raises(NodeInputError, match="4096 latents of 16384x16384 need 256.0 GiB"):
        empty_latent_image(16384, 16384, 4096)


def test_images_per_call_is_what_fits(monkeypatch):
    import torch

    from nodeflow.sampling import memory

    monkeypatch.setattr(memory, "available_memory", lambda device: 10 * 2**30)
    per_image = memory.ACTIVATION_BYTES * 64 * 64 * 320  # SD1 at 512 px, fp32: 160 MiB
    latents = memory.LATENT_COPIES * 4 * 64 * 64 * 4
    fit = memory.images_per_call(320, torch.float32, torch.device("cpu"), torch.Size((1, 4, 64, 64)))
    assert fit == (10 * 2**30 - latents) // per_image
    assert memory.images_per_call(320, torch.float32, torch.device("cpu"), torch.Size((1, 4, 64, 64)), 2) == 2
    with pytest.raises(Exception, match="needs about"):
        memory.images_per_call(320, torch.float32, torch.device("cpu"), torch.Size((64, 4, 512, 512)))


def lora_file(tmp_path, edit) -> str:
    """A tiny checkpoint's LoRA with one layer changed by ``edit(tensors, first_key)``; the file name."""
    from safetensors.torch import load_file, save_file

    from tests.factories import write_tiny_lora

    path = write_tiny_lora(tmp_path / "loras" / "odd.safetensors")
    tensors = load_file(str(path))
    first = sorted(k for k in tensors if k.endswith(".lora_down.weight"))[0]
    edit(tensors, first)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return first.removesuffix(".lora_down.weight")


@pytest.mark.parametrize("case", ["wrong-shape", "nan"])
def test_a_lora_that_does_not_fit_or_holds_nan_is_refused_when_applied(tmp_path, case):
    """A LoRA with the wrong shapes loaded silently, then KSampler failed with 'mat1 and mat2 shapes
    cannot be multiplied'; a NaN one saved a black image. Both are refused naming file and layer."""
    import torch

    from nodeflow.engine.context import RunContext
    from nodeflow.errors import ModelFileError
    from nodeflow.loading.checkpoint import load_checkpoint
    from nodeflow.runtime.paths import Paths
    from nodeflow_nodes.lora import lora_loader
    from tests.factories import write_tiny_checkpoint

    def wrong_shape(tensors, key):
        down = tensors[key]
        tensors[key] = torch.zeros(down.shape[0], down.shape[1] + 8, *down.shape[2:])

    def nan(tensors, key):
        tensors[key] = torch.full_like(tensors[key], float("nan"))

    layer = lora_file(tmp_path, wrong_shape if case == "wrong-shape" else nan)
    checkpoint = load_checkpoint(write_tiny_checkpoint(tmp_path / "checkpoints" / "tiny.safetensors"))
    ctx = RunContext(paths=Paths(models_dirs=(tmp_path,), assets_dir=tmp_path / "none"))
    expected = "a LoRA made for another model family" if case == "wrong-shape" else "not finite"
    with pytest.raises(ModelFileError, match=f"odd.safetensors: layer {layer} .*{expected}"):
        lora_loader(checkpoint.model, checkpoint.clip, "odd.safetensors", 1.0, 1.0, ctx)


def test_an_embedding_holding_nan_is_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    from nodeflow.errors import ModelFileError
    from nodeflow.loading.embeddings import load_embedding

    save_file({"emb_params": torch.tensor([[1.0, float("nan")]])}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ModelFileError, match="bad.safetensors: the embedding holds values that are not finite"):
        load_embedding(tmp_path / "bad.safetensors")


def test_a_comfyui_workflow_with_two_nodes_of_one_id_is_refused(run):
    node = {"id": 1, "type": "EmptyImage", "mode": 0, "widgets_values": [8, 8, 1, 0], "inputs": [], "outputs": []}
    code, err = run("validate", {"nodes": [node, dict(node)], "links": []})
    assert code == EXIT_USER_ERROR and "two nodes have the id 1" in err


# Found by the fuzz test (tests/test_fuzz_input.py) ----------------------------------------------

@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_settings_number_over_the_digit_limit_is_a_config_error(run, tmp_path, command):
    settings = tmp_path / "settings.toml"
    settings.write_text("preview_every = " + "9" * 5000 + "\n")
    code, err = run(command, image_chain(), config=settings)
    assert code == EXIT_USER_ERROR and "not valid TOML: a number has more than 4300 digits" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("key", ["models", "output", "input", "custom_nodes"])
def test_a_settings_path_of_an_unknown_users_home_is_a_config_error(run, tmp_path, key):
    settings = tmp_path / "settings.toml"
    settings.write_text(f'{key} = "~nodeflow-no-such-user/x"\n')
    code, err = run("validate", image_chain(), config=settings)
    assert code == EXIT_USER_ERROR and "Traceback" not in err
    assert f"settings.toml: {key}: '~nodeflow-no-such-user/x': cannot find the home folder of " \
           "'~nodeflow-no-such-user' (no such user)" in err


def test_a_folder_option_of_an_unknown_users_home_is_a_clean_error(run, tmp_path):
    code, err = run("run", image_chain(), extra=["--output-dir", "~nodeflow-no-such-user/out"])
    assert code == EXIT_USER_ERROR and "Traceback" not in err
    assert "cannot find the home folder of '~nodeflow-no-such-user' (no such user)" in err


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\uDC80"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_escaped_lone_surrogate_is_refused(run, command, escape):
    """A lone surrogate read from JSON made SaveImage crash (exit 1) writing the workflow into the
    PNG: it is no character, so no UTF-8 text can hold it."""
    workflow = image_chain()
    workflow["ui"] = {"notes": "NOTE"}
    code, err = run(command, json.dumps(workflow).replace("NOTE", "a" + escape + "b"))
    assert code == EXIT_USER_ERROR and "Traceback" not in err
    assert f"holds the escape {escape.lower()}: half of a surrogate pair, alone, is not a character" in err


def test_an_escaped_surrogate_pair_is_one_character(run, tmp_path):
    workflow = image_chain()
    workflow["nodes"]["9"]["inputs"]["filename_prefix"] = "EMOJI"
    code, err = run("run", json.dumps(workflow).replace("EMOJI", "\\ud83d\\ude00"))
    assert code == 0, err
    assert (tmp_path / "out" / "\U0001f600_00001_.png").is_file()


def test_an_infinite_comfyui_ui_link_id_is_a_format_error(run):
    """``int(Infinity)`` raised OverflowError, which the UI reader let through as a traceback."""
    ui = {"nodes": [{"id": 1, "type": "EmptyImage", "widgets_values": [8, 8, 1, 0]}],
          "links": [[float("inf"), 1, 0, 2, 0, "IMAGE"]]}
    code, err = run("validate", json.dumps(ui))  # json writes the float as Infinity
    assert code == EXIT_USER_ERROR and "malformed link [inf, 1, 0, 2, 0, 'IMAGE']" in err and "Traceback" not in err


@pytest.mark.parametrize("where", ["api", "ui"])
def test_a_comfyui_title_that_is_not_text_is_a_format_error(run, where):
    """It ran, and the PNG it saved could not be read back ("node 1 has a title that is not text")."""
    if where == "api":
        workflow = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
                          "_meta": {"title": 5}},
                    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "out", "images": ["1", 0]}}}
    else:
        workflow = {"nodes": [{"id": 1, "type": "EmptyImage", "widgets_values": [8, 8, 1, 0], "title": 5},
                              {"id": 9, "type": "SaveImage", "widgets_values": ["out"],
                               "inputs": [{"name": "images", "link": 1}]}],
                    "links": [[1, 1, 0, 9, 0, "IMAGE"]]}
    code, err = run("run", workflow)
    assert code == EXIT_USER_ERROR and "node 1 has a title that is not text (5)" in err and "Traceback" not in err


@pytest.mark.parametrize("key", ["models", "input", "custom_nodes"])
def test_a_settings_folder_name_too_long_for_the_file_system_is_a_clean_error(run, tmp_path, key):
    """Looking into a folder named by 5000 characters raised OSError (ENAMETOOLONG) as a traceback."""
    settings = tmp_path / "settings.toml"
    settings.write_text(f'{key} = "{"x" * 5000}"\n')
    workflow = tiny_workflow({"1": {"type": "LoadImage", "inputs": {"image": "a.png"}},
                              "2": {"type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
                              "9": {"type": "PreviewImage"}}, [{"from": ["1", 0], "to": ["9", "images"]}])
    code, err = run("validate", workflow, config=settings)
    assert code == EXIT_USER_ERROR and "Traceback" not in err
    assert err.startswith(f"nodeflow: File name too long: {tmp_path / ('x' * 5000)}")


def test_a_settings_folder_with_a_nul_is_a_config_error(run, tmp_path):
    """It read as "the filename prefix 'out' leads outside the output folder" when SaveImage ran."""
    settings = tmp_path / "settings.toml"
    settings.write_text('output = "out\\u0000put"\n')
    code, err = run("validate", image_chain(), config=settings)
    assert code == EXIT_USER_ERROR and "output: a folder path cannot hold a NUL character" in err


@pytest.mark.parametrize("value, problem", [
    ("x\udcff", "the value is not UTF-8 text"),  # the byte 0xff in an argument, as Python decodes it
    ('"\\ud800"', "the value holds the escape \\ud800: half of a surrogate pair, alone, is not a character"),
    ("[" * 3000, "the value nests more than 100 levels deep"),
    ("9" * 5000, "the value has a number with 5000 digits (at most 40)"),
])
def test_a_hostile_set_value_is_a_clean_error(run, value, problem):
    """A value not UTF-8 made SaveImage crash (exit 1); one 3000 deep or with 5000 digits, for an
    input that takes JSON, gave a RecursionError or ValueError traceback."""
    workflow = image_chain()
    workflow["nodes"]["5"] = {"type": "NotInstalled", "mode": "muted"}
    target = "9.filename_prefix" if value.startswith("x") else "5.x"
    code, err = run("run", workflow, extra=[f"--set={target}={value}"])
    assert code == EXIT_USER_ERROR and problem in err and "Traceback" not in err


@pytest.mark.parametrize("node_type, radius", [("ImageBlur", "blur_radius"), ("ImageSharpen", "sharpen_radius")])
def test_a_filter_wider_than_the_image_is_a_clean_error(run, node_type, radius):
    """On a 512x1 image the filter's ValueError was taken for a crash (exit 1, a traceback logged)."""
    workflow = image_chain()
    workflow["nodes"]["1"]["inputs"].update(width=512, height=1)
    workflow["nodes"]["2"] = {"type": node_type, "inputs": {radius: 1}}
    workflow["links"] = [{"from": ["1", 0], "to": ["2", "image"]}, {"from": ["2", 0], "to": ["9", "images"]}]
    code, err = run("run", workflow)
    assert code == EXIT_USER_ERROR and "Traceback" not in err
    assert f"node 2 ({node_type}): input '{radius}': 1 does not fit the 512x1 image" in err


def test_batching_images_of_very_different_shapes_keeps_a_pixel_of_the_crop():
    """Image 2 (512x512) centre-cropped to image 1's 512:1 kept 0 rows: interpolate raised a
    RuntimeError (exit 1). ComfyUI's crop has the same rounding; at least the middle rows stay."""
    import torch

    from nodeflow.image.ops import center_crop_to_aspect
    from nodeflow_nodes.image import image_batch

    batch = image_batch(torch.zeros(1, 1, 512, 3), torch.ones(1, 512, 512, 3))[0]
    assert batch.shape == (2, 1, 512, 3) and batch[1].min() == 1
    assert center_crop_to_aspect(torch.zeros(1, 3, 512, 512), 512, 1).shape[-2:] == (2, 512)
    assert center_crop_to_aspect(torch.zeros(1, 3, 3, 511), 1, 512).shape[-2:] == (3, 1)
    assert center_crop_to_aspect(torch.zeros(1, 3, 480, 640), 512, 512).shape[-2:] == (480, 480)  # as before


@pytest.mark.parametrize("node_type, inputs", [
    ("ImageScaleBy", {"upscale_method": "nearest-exact", "scale_by": 0.01}),
    ("ImageScaleBy", {"upscale_method": "lanczos", "scale_by": 0.01}),
])
def test_scaling_a_small_image_down_by_a_small_factor_keeps_one_pixel(run, tmp_path, node_type, inputs):
    """8 pixels x 0.01 rounded to 0: interpolate raised a RuntimeError (or Pillow a ValueError), exit 1."""
    workflow = image_chain()
    workflow["nodes"]["2"] = {"type": node_type, "inputs": inputs}
    workflow["links"] = [{"from": ["1", 0], "to": ["2", "image"]}, {"from": ["2", 0], "to": ["9", "images"]}]
    code, err = run("run", workflow)
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "out_00001_.png").size == (1, 1)


def test_scaling_a_small_latent_down_by_a_small_factor_keeps_one_latent_pixel():
    import torch

    from nodeflow_nodes.latent import latent_upscale_by

    assert latent_upscale_by({"samples": torch.zeros(1, 4, 2, 2)}, "nearest-exact", 0.01)[0]["samples"].shape == (1, 4, 1, 1)


def test_a_compressed_chunk_after_the_text_budget_is_spent_is_refused(run, tmp_path, monkeypatch):
    """zlib's max_length 0 means no limit: with the budget used up exactly, the next compressed
    chunk inflated without bound."""
    import zlib

    from nodeflow.formats import png_text

    monkeypatch.setattr(png_text, "MAX_TEXT_BYTES", 1000)
    chunks = [(b"tEXt", b"a\0" + b"x" * 1000), (b"zTXt", b"prompt\0\x00" + zlib.compress(b"[" * 100_000))]
    png = png_with_chunks(tmp_path / "spent.png", chunks, width=4, height=4)
    code, err = run("validate", png.read_bytes(), name="wf.png")
    assert code == EXIT_USER_ERROR and "text chunks hold more than" in err
