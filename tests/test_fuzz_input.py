"""Fuzzing hostile input (issue 17, the proof): workflows, PNG chunks and settings files generated
from their formats' grammars, filled with hostile values, run through ``nodeflow validate`` and
``nodeflow run`` in-process.

Every example must end with exit code 0 or 2 (1 means a node crashed unexpectedly), print no
traceback (none escapes ``cli.main``, none is logged, none is on stderr), finish within
``TIME_BOUND_S`` and raise the process's peak RSS by less than ``RSS_BOUND_KIB`` (the kernel's
peak mark, VmHWM, is reset before each command). A workflow that ran and saved a PNG must validate
again from that PNG (what SaveImage writes reads back).

What is generated:

- our workflow JSON: nodes of the registry's types (mostly the model-free image, mask and latent
  nodes, which really run) and unknown ones; inputs with good values or hostile ones (huge,
  negative, 41- and 5000-digit numbers, NaN, Infinity, 1e999, long text, odd unicode, NUL,
  escaped lone surrogates, nesting around the depth limit); links from earlier nodes' outputs,
  to missing nodes, outputs and inputs, into widgets, in cycles; modes, titles, ``ui``
  sections; broken top levels and files (truncated, BOM, bytes that are not UTF-8);
- the same graphs as ComfyUI API JSON (``class_type``/``inputs``/``_meta``, link arrays of any
  shape, constant nodes, ``/prompt`` bodies) and ComfyUI UI JSON (``nodes`` with
  ``widgets_values``, sockets, converted widgets, Reroute/PrimitiveNode/Note, links as arrays
  or schema-1 objects, groups, subgraphs);
- PNG files written chunk by chunk: lying IHDR sizes, tEXt/zTXt/iTXt chunks holding any of the
  above or A1111 ``parameters`` text, bad keywords, corrupt and bomb zlib streams, text around
  the size limit (lowered for some examples), invalid UTF-8, lying chunk lengths, cut files;
- settings files (TOML): models/output/input/custom_nodes/preview_every/[cache] with hostile
  values (inf, nan, 1e999, huge integers, odd paths, NUL, wrong types, deep arrays);
- ``--set NODE.INPUT=VALUE`` overrides with hostile values.

Nothing loads a model: the test's models folder is empty and generated names never name the
embedded model in assets/, so model-loading nodes fail validation (exit 2). Sizes that would
make real work (a 16384 x 16384 image) are only validated, never run (see ``graphs``).

Budget: in CI each property runs a fixed, derandomized set of examples (the whole file in about
25 s on a 2-core machine). ``NODEFLOW_FUZZ_EXAMPLES=N`` runs N random examples per property
instead (2000 take about 2.5 minutes); ``NODEFLOW_FUZZ_SEED=S`` makes such a run repeatable.
``pytest --hypothesis-show-statistics`` shows how the examples ended (exit codes per command).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import resource
import shutil
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, seed, settings
from hypothesis import strategies as st

from nodeflow import cli
from nodeflow.engine.registry import Registry
from nodeflow.spec import BOOLEAN, CHOICE, FLOAT, INT, STRING, ModelFile

EXAMPLES = int(os.environ.get("NODEFLOW_FUZZ_EXAMPLES") or 0)
SEED = os.environ.get("NODEFLOW_FUZZ_SEED")
TIME_BOUND_S = 30.0  # per command; a few hundredths of a second is usual
RSS_BOUND_KIB = 2 * 2**20  # 2 GiB of peak RSS above the RSS before the command
ENVIRONMENT = ("NODEFLOW_CONFIG", "NODEFLOW_MODELS_DIR", "NODEFLOW_OUTPUT_DIR", "NODEFLOW_INPUT_DIR",
               "NODEFLOW_CUSTOM_NODES", "NODEFLOW_MAX_IMAGE_PIXELS", "XDG_CONFIG_HOME", "HOME")


def fuzz_settings(ci_examples: int):
    """Hypothesis settings: ``ci_examples`` derandomized examples, or $NODEFLOW_FUZZ_EXAMPLES random ones."""
    chosen = settings(max_examples=EXAMPLES or ci_examples, derandomize=not EXAMPLES, deadline=None,
                      database=None, print_blob=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.large_base_example, HealthCheck.filter_too_much])

    def apply(test):
        test = chosen(test)
        return seed(int(SEED))(test) if EXAMPLES and SEED else test

    return apply


# ----- running nodeflow in-process, measured ---------------------------------------------------

def _status_kib(field_name: str) -> int | None:
    try:
        match = re.search(rf"^{field_name}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process, so that each command's peak is its
    own; False where that is not possible (then the lifetime peak is compared)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_kib() -> int:
    return _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class _TracebackCatcher(logging.Handler):
    """Records what would print a traceback on stderr: a warning or error logged with exc_info."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.tracebacks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.tracebacks.append(logging.Formatter().format(record))


@dataclass
class Outcome:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float
    rss_growth_kib: int
    logged_tracebacks: list[str]

    def check(self) -> None:
        where = f"nodeflow {' '.join(self.args)[:300]}"
        assert self.code in (0, 2), f"{where}: exit {self.code}\n{self.stderr[-3000:]}"
        assert "Traceback" not in self.stderr, f"{where}: a traceback on stderr\n{self.stderr[-3000:]}"
        assert not self.logged_tracebacks, f"{where}: logged a traceback\n{self.logged_tracebacks[0][-3000:]}"
        assert self.seconds < TIME_BOUND_S, f"{where}: took {self.seconds:.1f} s"
        assert self.rss_growth_kib < RSS_BOUND_KIB, f"{where}: peak RSS grew by {self.rss_growth_kib / 2**20:.2f} GiB"


@contextlib.contextmanager
def working_directory(path: Path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


TINY_PNG = None


def tiny_png() -> bytes:
    global TINY_PNG
    if TINY_PNG is None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGBA", (6, 5), (200, 30, 30, 128)).save(buffer, format="PNG")
        TINY_PNG = buffer.getvalue()
    return TINY_PNG


class Sandbox:
    """A fresh folder per example: models (empty), input (one tiny image), output, temporary
    folder, an empty settings file. Commands run with the folder as working directory and HOME,
    and without the user's NODEFLOW_* variables."""

    def __init__(self, base: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=base))
        for name in ("models", "input", "output", "tmp"):
            (self.dir / name).mkdir()
        (self.dir / "input" / "tiny.png").write_bytes(tiny_png())
        self.settings = self.dir / "settings.toml"
        self.settings.write_text("")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name: str, content: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(content)
        return path

    def folders(self) -> list[str]:
        return ["--models-dir", str(self.dir / "models"), "--input-dir", str(self.dir / "input"),
                "--output-dir", str(self.dir / "output")]

    def nodeflow(self, *args: str) -> Outcome:
        """``nodeflow ARGS`` in-process; stdout strict UTF-8 and stderr backslash-escaped, as Python
        sets up a terminal's streams."""
        stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
        stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)
        catcher = _TracebackCatcher()
        root = logging.getLogger()
        saved_env = {name: os.environ.pop(name, None) for name in ENVIRONMENT}
        os.environ["HOME"] = str(self.dir)
        saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(self.dir / "tmp")
        root.addHandler(catcher)
        rss_before = _status_kib("VmRSS") or 0
        reset = _reset_peak_rss()
        peak_before = _peak_kib()
        started = time.perf_counter()
        try:
            with working_directory(self.dir), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = cli.main(list(args))
        finally:
            seconds = time.perf_counter() - started
            peak = _peak_kib()
            root.removeHandler(catcher)
            tempfile.tempdir = saved_tempdir
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        growth = peak - rss_before if reset else max(0, peak - peak_before)
        outcome = Outcome(list(args), code, stdout.buffer.getvalue().decode("utf-8"),
                          stderr.buffer.getvalue().decode("utf-8"), seconds, growth, catcher.tracebacks)
        note(f"nodeflow {' '.join(args)[:200]} -> {code} in {seconds:.2f} s: {outcome.stderr[-500:]}")
        event(f"{args[0]} exit {code}")  # shown by pytest --hypothesis-show-statistics
        return outcome



@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory):
    """Makes a Sandbox per example (removed after it)."""
    base = tmp_path_factory.mktemp("fuzz")

    @contextlib.contextmanager
    def make():
        box = Sandbox(base)
        try:
            yield box
        finally:
            box.remove()

    return make


# ----- hostile values ------------------------------------------------------------------------

def rarely(draw, one_in: int) -> bool:
    """True once in ``one_in`` draws (False is what examples shrink to)."""
    return draw(st.integers(1, one_in)) == one_in


class Raw:
    """JSON (or TOML) text written as it is: numbers no Python value prints, escapes, nesting."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


class Pairs(list):
    """A JSON object written from (key, value) pairs: keys may repeat."""


def deep(depth: int, kind: str = "list") -> Raw:
    opening, closing = ("[", "]") if kind == "list" else ('{"a":', "}")
    return Raw(opening * depth + "0" + closing * depth)


REGISTRY = Registry.load()
SPECS = REGISTRY.specs
MODEL_SOCKETS = {"MODEL", "CLIP", "VAE", "CONTROL_NET", "CONDITIONING"}
#: Node types that run without a model: what a fuzzed workflow mostly consists of.
MODEL_FREE = sorted(node_id for node_id, spec in SPECS.items()
                    if not isinstance(spec.fingerprint, ModelFile)
                    and not any(s.type in MODEL_SOCKETS for s in spec.inputs))
IMAGE_MAKERS = ["EmptyImage", "LoadImage", "SolidMask", "EmptyLatentImage"]
OUTPUT_TYPES = ["SaveImage", "PreviewImage"]
#: Inputs whose large in-range values make large tensors: runs only get small ones.
BATCH_INPUTS = {"batch_size", "amount", "length"}
SIZE_INPUTS = {"width", "height", "batch_size", "amount", "length", "left", "top", "right", "bottom",
               "feathering", "expand", "feather", "grow_mask_by", "scale_by", "megapixels", "tile_size",
               "target_width", "target_height", "largest_size", "spacing_width"}
MODEL_CHOICES = {"ckpt_name", "vae_name", "lora_name", "control_net_name"}

ODD_STRINGS = [
    "", " ", "\0", "a\0b", "\ufeff", "\u202e", "\U0010ffff", "\uffff", "\ufffe", "\U0001d7d8", "\u00b2",
    "\u0663", "%", "%%", "%date:yyyy-MM-dd hh:mm:ss%", "%EmptyImage.width%", "%1.color%", "%batch_num%",
    "%width%x%height%", "../../escape", "/tmp/nodeflow-fuzz-escape/x", "C:\\x", "\\\\server\\share\\x",
    "CON", ".", "..", ".hidden", "~", "~root/x", "a/", "sub/dir/x", "\n", "\r\n", "\t", "\x7f", "\x1b[31m",
    "null", "NaN", "Infinity", "1e999", "9" * 41, "\u0130", "\u00df", "\u0345", "\ufdd0", "\U000e0001",
    "x" * 300, "a/" * 100,
]
RAW_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "-0", "-0.0", "1E+308",
               "4.9e-324", "0.1e1", "1" * 40, "-" + "1" * 40, "1" * 41, "9" * 5000, "-" + "9" * 4301,
               "1" * 400 + ".5", "1e" + "9" * 5000, "123456789012345678901234567890.0"]
RAW_STRINGS = ['"\\ud800"', '"a\\udfffb"', '"\\udc80"', '"\\u0000"', '"\\ud83d\\ude00"']
HUGE_INTS = [-1, 0, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**39, -(10**39)]

odd_text = st.one_of(st.sampled_from(ODD_STRINGS),
                     st.text(st.characters(exclude_categories=("Cs",)), max_size=24))
long_text = st.builds(lambda unit, count: unit * count, st.sampled_from(["a", "\0", "\u00e9", "\U0001f4a5", "%", "/", "["]),
                      st.sampled_from([255, 256, 4096, 65536, 1_000_000]))
raw_numbers = st.sampled_from(RAW_NUMBERS).map(Raw)
raw_strings = st.sampled_from(RAW_STRINGS).map(Raw)
deep_values = st.builds(deep, st.sampled_from([10, 90, 95, 96, 97, 98, 99, 100, 101, 200, 5000]),
                        st.sampled_from(["list", "object"]))
leaves = st.one_of(st.none(), st.booleans(), st.sampled_from(HUGE_INTS), st.integers(), st.floats(), odd_text,
                   raw_numbers, raw_strings)
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(odd_text, inner, max_size=4), max_leaves=12)
hostile_values = st.one_of(leaves, leaves, json_values, long_text, deep_values)


GOOD_PREFIXES = ["out", "sub/out", "%date:yyyy%/x_%batch_num%", "%EmptyImage.width%", "%1.color%_%width%",
                 "u\u00e9\U0001f4a5", "sub/", "%Note.text%"]


def good_value(spec, run: bool):
    """A value ``spec`` accepts; with ``run``, a small one where a large one would make large tensors."""
    if spec.type == INT:
        low = int(spec.min) if spec.min is not None else -(2**31)
        high = int(spec.max) if spec.max is not None else 2**31
        default = spec.default if isinstance(spec.default, int) else low
        if run and spec.name in SIZE_INPUTS:  # (omitted sizes are 512: a 512 x 512 image, 4 of them at most)
            low = max(low, -64)
            return st.integers(low, max(low, min(high, 4 if spec.name in BATCH_INPUTS else 64)))
        return st.one_of(st.just(default), st.integers(low, high), st.sampled_from([low, high]))
    if spec.type == FLOAT:
        low = float(spec.min) if spec.min is not None else -1e6  # float: an integer bound such as
        high = float(spec.max) if spec.max is not None else 1e6  # PrimitiveFloat's 2^63 - 1 is not one
        if run and spec.name in SIZE_INPUTS:
            high = min(high, 1.25 if spec.name == "scale_by" else 0.05)
        return st.one_of(st.floats(low, high, allow_nan=False), st.sampled_from([low, high]))
    if spec.type == BOOLEAN:
        return st.booleans()
    if spec.type == STRING:
        if spec.name == "filename_prefix":
            return st.one_of(st.sampled_from(GOOD_PREFIXES + ["x" * 300, "a/" * 300]), odd_text)
        return st.one_of(odd_text, long_text)
    if spec.type == CHOICE:
        if spec.name in MODEL_CHOICES:
            return st.sampled_from(["model.safetensors", "missing.ckpt", "../assets/nodeflow-tiny.safetensors",
                                    "sub\\x.safetensors", "/etc/passwd"])
        if spec.has_computed_choices:
            return st.sampled_from(["tiny.png", "red_circle_on_blue.png", "star_mask_lower_right.png", "missing.png"])
        return st.sampled_from(spec.choices())
    return hostile_values


# ----- workflow graphs -------------------------------------------------------------------------

@dataclass
class FNode:
    id: str
    type: Any
    values: dict = field(default_factory=dict)
    mode: Any = "normal"
    title: Any = None


@dataclass
class FLink:
    src: Any
    out: Any
    dst: Any
    input: Any


@dataclass
class FGraph:
    nodes: list[FNode]
    links: list[FLink]
    ui: Any = None
    runnable: bool = True  # only small sizes: safe to run

    def spec(self, node: FNode):
        return SPECS.get(node.type) if isinstance(node.type, str) else None


HOSTILE_IDS = ["0", "-1", "01", "1.5", "\u00b2", "7" * 5000, "", " ", "\0", "a\0", "\U0001f4a5", "x" * 300, "%",
               "Infinity", "1e3", "999999999999999999"]
node_ids = st.one_of(st.integers(1, 40).map(str), st.integers(1, 40).map(str), st.sampled_from(HOSTILE_IDS), odd_text)
UNKNOWN_TYPES = ["KSampler2", "ksampler", "", " ", "Note", "Reroute", "PrimitiveNode", "PrimitiveInt", "PrimitiveString",
                 "workflow/group", "workflow>x", "Save Image", "SaveImage\0", "\U0001f4a5", "A" * 5000]
node_types = st.one_of(st.sampled_from(MODEL_FREE), st.sampled_from(MODEL_FREE), st.sampled_from(MODEL_FREE),
                       st.sampled_from(IMAGE_MAKERS), st.sampled_from(sorted(SPECS)), st.sampled_from(UNKNOWN_TYPES),
                       odd_text)
modes = st.one_of(st.just("normal"), st.just("normal"), st.just("normal"), st.sampled_from(["muted", "bypassed"]),
                  st.sampled_from(["Normal", "", 0, 4, None, ["muted"]]))
titles = st.one_of(st.none(), st.none(), st.sampled_from(["Note", "Seed", "EmptyImage"]), odd_text, st.integers())


def _compatible(output_type: str, input_type: str) -> bool:
    from nodeflow.engine.validate import types_compatible

    return types_compatible(output_type, input_type)


@st.composite
def graphs(draw, allow_expensive: bool = True) -> FGraph:
    """A workflow graph wired like a real one (links from earlier nodes' outputs of the right
    type, an output node at the end), clean or with hostile types, values, links and modes mixed
    in (``hostility``: 0 none, 1 some, 2 much). ``runnable`` is False when an in-range value could
    make real work (then the workflow is only validated)."""
    hostility = draw(st.sampled_from([0, 0, 1, 2]))
    chance = {0: 0, 1: 1, 2: 5}[hostility]  # in 20, for each value and link

    def hostile() -> bool:
        return draw(st.integers(1, 20)) > 20 - chance

    runnable = not (allow_expensive and rarely(draw, 4))
    ids = draw(st.lists(node_ids if hostility else st.integers(1, 40).map(str) | st.sampled_from(["\u00b2", "7" * 30, "a b"]),
                        min_size=1, max_size=7, unique=True))
    nodes: list[FNode] = []
    links: list[FLink] = []
    for node_id in ids:
        outputs = {out.type for other in nodes if other.type in SPECS for out in SPECS[other.type].outputs}
        feedable = [t for t in MODEL_FREE if all(s.is_widget or s.optional or s.type in outputs for s in SPECS[t].inputs)]
        if hostile() or not feedable:
            node_type = draw(node_types)
        else:
            node_type = draw(st.sampled_from(feedable) | st.sampled_from(["EmptyImage", "LoadImage"]))
        node = FNode(node_id, node_type, mode=draw(modes if hostile() else st.sampled_from(["normal"] * 12 + ["muted", "bypassed"])),
                     title=draw(titles if hostile() else st.none() | odd_text.filter(lambda t: "\0" not in t)))
        spec = SPECS.get(node.type) if isinstance(node.type, str) else None
        for input_spec in spec.inputs if spec else ():
            if input_spec.is_widget:
                if not hostile():
                    if input_spec.default is None or draw(st.integers(0, 9)):  # else left at its default
                        node.values[input_spec.name] = draw(good_value(input_spec, runnable))
                elif not rarely(draw, 5):
                    node.values[input_spec.name] = draw(hostile_values)
                else:  # a widget converted to a socket, fed by a link
                    links.append(FLink(draw(st.sampled_from(ids)), draw(st.integers(0, 2)), node_id, input_spec.name))
                continue
            sources = [(other.id, index) for other in nodes if other.type in SPECS
                       for index, out in enumerate(SPECS[other.type].outputs) if _compatible(out.type, input_spec.type)]
            if sources and not hostile():
                src, out = draw(st.sampled_from(sources))
                links.append(FLink(src, out, node_id, input_spec.name))
            elif not rarely(draw, 5):
                links.append(FLink(draw(st.sampled_from(ids) | node_ids), draw(st.sampled_from([0, 1, 2, -1, 99])),
                                   node_id, input_spec.name))
            else:
                node.values[input_spec.name] = draw(hostile_values)  # a literal for a socket
        if not spec or hostile():  # unknown inputs
            for name in draw(st.lists(odd_text | st.sampled_from(["image", "width", "seed"]), max_size=3)):
                node.values[name] = draw(hostile_values)
        nodes.append(node)
    images = [(node.id, index) for node in nodes if node.type in SPECS
              for index, out in enumerate(SPECS[node.type].outputs) if out.type == "IMAGE"]
    if not images and not hostility:
        nodes.append(FNode("98", "EmptyImage", {"width": 8, "height": 8}))
        images = [("98", 0)]
    if images and not (hostility and rarely(draw, 10)):
        free_ids = [i for i in ("99", "save", "\u00b2", "7" * 30) if i not in ids] or ["output"]
        output = FNode(draw(st.sampled_from(free_ids)), draw(st.sampled_from(OUTPUT_TYPES)),
                       mode="normal" if not hostile() else draw(st.sampled_from(["bypassed", "muted"])))
        if output.type == "SaveImage":
            prefix = SPECS["SaveImage"].input("filename_prefix")
            output.values["filename_prefix"] = draw(good_value(prefix, True) if hostile() else st.sampled_from(GOOD_PREFIXES))
            if draw(st.booleans()):
                output.values["embed_workflow"] = draw(hostile_values if hostile() else st.booleans())
        src, out = draw(st.sampled_from(images))
        links.append(FLink(src, out, output.id, "images"))
        nodes.append(output)
    all_ids = [node.id for node in nodes]
    for _ in range(draw(st.integers(1, 3)) if hostile() else 0):  # stray links, maybe cycles
        links.append(FLink(draw(st.sampled_from(all_ids) | node_ids),
                           draw(st.one_of(st.integers(-2, 3), st.sampled_from(HUGE_INTS), hostile_values)),
                           draw(st.sampled_from(all_ids) | node_ids),
                           draw(st.sampled_from(["image", "images", "mask", "samples", "width"]) | odd_text)))
    ui = draw(st.one_of(st.none(), st.none(),
                        st.builds(lambda pos: {"nodes": {i: {"pos": pos} for i in all_ids}},
                                  st.lists(st.floats() | st.integers(), max_size=3)),
                        st.dictionaries(odd_text, hostile_values, max_size=3),
                        st.builds(lambda text: {"notes": text}, long_text)))
    return FGraph(nodes, links, ui, runnable)


# ----- writing the formats ---------------------------------------------------------------------

def to_json(value: Any, ensure_ascii: bool = False) -> str:
    """JSON text of ``value``; ``Raw`` pieces written as they are, ``Pairs`` as objects that may
    repeat keys, floats as Python writes them (NaN, Infinity)."""
    parts: list[str] = []

    def key(k: Any) -> str:
        return k.text if isinstance(k, Raw) else json.dumps(str(k), ensure_ascii=ensure_ascii)

    def emit(v: Any) -> None:
        if isinstance(v, Raw):
            parts.append(v.text)
        elif isinstance(v, (dict, Pairs)):
            parts.append("{")
            for index, (k, item) in enumerate(v.items() if isinstance(v, dict) else v):
                parts.append(("," if index else "") + key(k) + ":")
                emit(item)
            parts.append("}")
        elif isinstance(v, (list, tuple)):
            parts.append("[")
            for index, item in enumerate(v):
                if index:
                    parts.append(",")
                emit(item)
            parts.append("]")
        else:
            parts.append(json.dumps(v, ensure_ascii=ensure_ascii))

    emit(value)
    return "".join(parts)


def ours(graph: FGraph) -> dict:
    nodes = {}
    for node in graph.nodes:
        entry: dict[str, Any] = {"type": node.type, "inputs": node.values}
        if node.mode != "normal":
            entry["mode"] = node.mode
        if node.title is not None:
            entry["title"] = node.title
        nodes[node.id] = entry
    data = {"format": "nodeflow-workflow", "version": 1, "nodes": nodes,
            "links": [{"from": [link.src, link.out], "to": [link.dst, link.input]} for link in graph.links]}
    if graph.ui is not None:
        data["ui"] = graph.ui
    return data


def comfy_api(graph: FGraph, draw, link_shape: str = "pair") -> dict:
    data: dict[str, Any] = {}
    for node in graph.nodes:
        if node.mode == "muted":
            continue
        inputs = dict(node.values)
        for link in graph.links:
            if link.dst == node.id:
                inputs[str(link.input)] = {"pair": [link.src, link.out], "int-id": [_int_id(link.src), link.out],
                                           "short": [link.src], "long": [link.src, link.out, 0],
                                           "string-index": [link.src, str(link.out)]}[link_shape]
        entry: dict[str, Any] = {"class_type": node.type, "inputs": inputs}
        if node.title is not None:
            entry["_meta"] = node.title if rarely(draw, 5) else {"title": node.title}
        data[node.id] = entry
    return data


def _int_id(node_id: str) -> Any:
    return int(node_id) if node_id.isascii() and node_id.isdigit() and len(node_id) < 30 else node_id


UI_LINK_FIELDS = [Raw("Infinity"), Raw("-Infinity"), Raw("NaN"), Raw("1e999"), -1, 2**64, 1.5, "1", "x", None, True, [1]]
COMFY_MODES = {"normal": 0, "muted": 2, "bypassed": 4}


def comfy_ui(graph: FGraph, draw) -> dict:
    """ComfyUI's UI (LiteGraph) JSON of ``graph``: ids as integers where they are numbers,
    widget values by position (a control value after each seed), sockets for links."""
    ids = {node.id: _int_id(node.id) for node in graph.nodes}
    next_link = iter(range(1, 10_000))
    ui_nodes, ui_links = [], []
    sockets: dict[str, list[str]] = {}
    for node in graph.nodes:
        spec = graph.spec(node)
        names = [s.name for s in spec.inputs if not s.is_widget] if spec else []
        names += [str(link.input) for link in graph.links if link.dst == node.id and str(link.input) not in names]
        sockets[node.id] = names
    link_ids = {}
    for link in graph.links:
        link_id = next(next_link)
        link_ids[id(link)] = link_id
        slot = sockets.get(link.dst, []).index(str(link.input)) if str(link.input) in sockets.get(link.dst, []) else 7
        src = ids.get(link.src, link.src)
        if rarely(draw, 10):  # through a Reroute node
            reroute = 1000 + link_id
            ui_nodes.append({"id": reroute, "type": "Reroute", "pos": [0, 0], "inputs": [{"name": "", "type": "*", "link": link_id}],
                             "outputs": [{"name": "", "type": "*", "links": [link_id + 5000]}]})
            ui_links.append([link_id, src, link.out, reroute, 0, "*"])
            link_id += 5000
            src, out = reroute, 0
        else:
            out = link.out
        ui_link = [link_id, src, out, ids.get(link.dst, link.dst), slot, "IMAGE"]
        if rarely(draw, 10):  # one field hostile
            ui_link[draw(st.integers(0, 5))] = draw(st.sampled_from(UI_LINK_FIELDS) | hostile_values)
        ui_links.append(ui_link)
    for node in graph.nodes:
        spec = graph.spec(node)
        if spec:
            widgets: list[Any] = []
            for widget in spec.widget_inputs:
                widgets.append(node.values.get(widget.name, widget.default))
                if widget.seed:
                    widgets.append(draw(st.sampled_from(["randomize", "fixed", "increment", "x"])))
            extra = [v for k, v in node.values.items() if spec.input(k) is None]
            widgets += extra
        else:
            widgets = list(node.values.values())
        cut = draw(st.sampled_from(["none"] * 18 + ["one less", "by name"]))
        if cut == "one less":
            widgets = widgets[:-1]
        elif cut == "by name":
            widgets = dict(node.values)
        entry = {"id": ids[node.id], "type": node.type, "pos": draw(st.sampled_from([[10, 20], [1e999, 0], None, {"0": 1, "1": 2}, "x"])),
                 "size": [300, 100], "flags": {}, "order": 0, "mode": COMFY_MODES.get(node.mode, node.mode) if isinstance(node.mode, str) else node.mode,
                 "inputs": [{"name": name, "type": "*", "link": next((link_ids[id(l)] for l in graph.links
                                                                     if l.dst == node.id and str(l.input) == name), None),
                             **({"widget": {"name": name}} if spec and spec.input(name) and spec.input(name).is_widget else {})}
                            for name in sockets[node.id]],
                 "outputs": [{"name": out.label, "type": out.type, "slot_index": index, "links": []}
                             for index, out in enumerate(spec.outputs)] if spec else [],
                 "properties": {}, "widgets_values": widgets}
        if node.title is not None:
            entry["title"] = node.title
        if rarely(draw, 20):
            entry["id"] = draw(st.sampled_from(UI_LINK_FIELDS))
        ui_nodes.append(entry)
    extras = draw(st.sampled_from(["none"] * 6 + ["primitive", "schema 1", "garbage link", "definitions"]))
    if extras == "primitive":  # a PrimitiveNode feeding a widget, and a note
        ui_nodes.append({"id": 900, "type": "PrimitiveNode", "widgets_values": draw(st.lists(hostile_values, max_size=2)),
                         "outputs": [{"links": [9000]}]})
        ui_nodes.append({"id": 901, "type": "Note", "widgets_values": [draw(odd_text)]})
        if graph.nodes:
            ui_links.append([9000, 900, 0, ids[graph.nodes[-1].id], draw(st.integers(-1, 3)), "INT"])
    elif extras == "schema 1":
        ui_links = [{"id": l[0], "origin_id": l[1], "origin_slot": l[2], "target_id": l[3], "target_slot": l[4], "type": l[5]}
                    for l in ui_links]
    elif extras == "garbage link":
        ui_links.append(draw(st.one_of(st.none(), hostile_values, st.lists(hostile_values, min_size=5, max_size=7))))
    data = {"last_node_id": len(ui_nodes), "last_link_id": len(ui_links), "nodes": ui_nodes, "links": ui_links,
            "groups": draw(st.sampled_from([[], [{"title": "g", "bounding": [0, 0, 10, 10]}], "x"])),
            "config": {}, "extra": {}, "version": 0.4}
    if extras == "definitions":
        data["definitions"] = draw(st.sampled_from([{"subgraphs": [{"id": "x"}]}, [], "x", {"subgraphs": []}]))
    return data


@st.composite
def a1111_texts(draw) -> str:
    number = st.one_of(st.integers(-5, 100).map(str), st.sampled_from(
        ["1e5", "nan", "inf", "-1", "9" * 5000, "9" * 40, "\u0661\u0662", "0x10", "1_0", "", " 20", "10000", "20.5"]))
    fields = {"Steps": number, "Sampler": st.sampled_from(["Euler a", "DPM++ 2M Karras", "UniPC", "x"]) | odd_text,
              "CFG scale": number, "Seed": number, "Size": st.sampled_from(["512x512", "16384x16384", "8x", "x", "1x2x3",
                                                                             "-8x-8", "9999999999x1"]) | odd_text,
              "Model": st.sampled_from(["v1-5", "missing", "../x", "a/b\\c", ""]),
              "Clip skip": number, "Schedule type": st.sampled_from(["Karras", "x"]) | odd_text,
              "Denoising strength": number}
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields)))
    if draw(st.booleans()):
        chosen = ["Steps", *[k for k in chosen if k != "Steps"]]
    values = [f"{name}: {draw(fields[name])}" for name in chosen]
    lines = [draw(odd_text | long_text)]
    if draw(st.booleans()):
        lines.append("Negative prompt: " + draw(odd_text))
    lines.append(", ".join(values))
    return "\n".join(lines)


@st.composite
def workflow_documents(draw, allow_expensive: bool = True) -> tuple[str, Any, FGraph]:
    """(format, JSON data, graph) of a generated workflow in one of the three JSON formats, with
    a hostile top level now and then."""
    graph = draw(graphs(allow_expensive))
    kind = draw(st.sampled_from(["ours", "ours", "api", "ui"]))
    if kind == "ours":
        data: Any = ours(graph)
    elif kind == "api":
        data = comfy_api(graph, draw, draw(st.sampled_from(["pair"] * 6 + ["int-id", "short", "long", "string-index"])))
        if rarely(draw, 10):
            data = {"prompt": data, "client_id": draw(odd_text)}
    else:
        data = comfy_ui(graph, draw)
    top = draw(st.sampled_from(["as is"] * 22 + ["any JSON", "a key twice", "a hostile field"]))
    if top == "any JSON":
        data = draw(json_values)
    elif top == "a key twice" and isinstance(data, dict):
        data = Pairs(list(data.items()) + list(data.items())[:1])
    elif top == "a hostile field" and isinstance(data, dict) and kind == "ours":
        data = {**data, draw(st.sampled_from(["version", "format", "nodes", "links", "ui"])): draw(hostile_values)}
    return kind, data, graph


def encode_document(data: Any, draw) -> bytes:
    """The JSON text as a file: UTF-8 (ASCII escapes or not), now and then with a BOM, cut short,
    or with bytes that are not UTF-8."""
    text = to_json(data, ensure_ascii=draw(st.booleans()))
    content = text.encode("utf-8")
    damage = draw(st.sampled_from(["none"] * 26 + ["BOM", "cut", "odd bytes", "trailing"]))
    if damage == "BOM":
        content = b"\xef\xbb\xbf" + content
    elif damage == "cut":
        content = content[: draw(st.integers(0, max(0, len(content) - 1)))]
    elif damage == "odd bytes":
        at = draw(st.integers(0, len(content)))
        content = content[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\0"])) + content[at:]
    elif damage == "trailing":
        content = content + draw(st.sampled_from([b" ", b"\n\0", b"garbage", b"{}"]))
    return content


# ----- PNG files ------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes, length: int | None = None) -> bytes:
    return struct.pack(">I", len(data) if length is None else length) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@st.composite
def png_files(draw) -> tuple[int, bytes]:
    """(text limit, PNG bytes): a PNG written chunk by chunk, its text chunks holding generated
    workflows or A1111 text or anything else; the limit on its text (png_text.MAX_TEXT_BYTES) is
    lowered for some examples so that text around the limit is cheap to make."""
    from nodeflow.formats import png_text

    limit = draw(st.sampled_from([png_text.MAX_TEXT_BYTES, 4096, 65536]))
    width, height = draw(st.sampled_from([(4, 4), (1, 1), (0, 0), (65535, 65535), (30000, 30000), (2**31 - 1, 1), (2**32 - 1, 2**32 - 1)]))
    parts = [PNG_SIGNATURE]
    if draw(st.integers(0, 19)):
        parts.append(png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
    for _ in range(draw(st.integers(0, 4))):
        parts.append(draw(text_chunks(limit)))
    if rarely(draw, 10):  # many small chunks
        parts.extend(png_chunk(b"tEXt", b"k%d\0v" % i) for i in range(draw(st.sampled_from([100, 5000]))))
    parts.append(png_chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    parts.append(png_chunk(b"IEND", b""))
    content = b"".join(parts)
    damage = draw(st.sampled_from(["none"] * 12 + ["cut", "lying length", "trailing"]))
    if damage == "cut":
        content = content[: draw(st.integers(8, len(content)))]
    elif damage == "lying length":
        content = PNG_SIGNATURE + png_chunk(b"tEXt", b"prompt\0{}", length=draw(st.sampled_from([2**31 - 1, 2**32 - 1, 100]))) + content[8:]
    elif damage == "trailing":
        content += draw(st.sampled_from([b"\0" * 3, png_chunk(b"tEXt", b"nodeflow\0{}"), b"garbage"]))
    return limit, content


@st.composite
def chunk_texts(draw, limit: int) -> tuple[bytes, bytes]:
    """(keyword, text) of a chunk: one of the formats under its keyword, A1111 text, or hostile
    text or JSON."""
    how = draw(st.sampled_from(["workflow"] * 5 + ["A1111", "around the limit", "deep", "any JSON"]))
    if how == "workflow":
        kind, data, _ = draw(workflow_documents(allow_expensive=False))  # these are run
        keyword = {"ours": b"nodeflow", "api": b"prompt", "ui": b"workflow"}[kind]
        return keyword, to_json(data, ensure_ascii=draw(st.booleans())).encode("utf-8")
    if how == "A1111":
        return b"parameters", draw(a1111_texts()).encode("utf-8")
    if how == "around the limit":
        size = draw(st.sampled_from([limit - 1, limit, limit + 1, 2 * limit] if limit <= 2**16 else [4096, 2**16]))
        return b"nodeflow", draw(st.sampled_from([b"[", b" ", b"x", b"\xc3\xa9"])) * size
    if how == "deep":
        return b"prompt", draw(deep_values).text.encode("utf-8")
    return b"nodeflow", to_json(draw(json_values)).encode("utf-8")


KEYWORDS = [b"nodeflow", b"prompt", b"workflow", b"parameters", b"Comment", b"", b"nodeflow\xff", b"x" * 80, b"prompt "]


@st.composite
def text_chunks(draw, limit: int) -> bytes:
    kind = draw(st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"iTXt", b"teXt"]))
    keyword, text = draw(chunk_texts(limit))
    if rarely(draw, 4):
        keyword = draw(st.sampled_from(KEYWORDS))
    compressed = zlib.compress(text, draw(st.sampled_from([0, 1, 9])))
    damage = draw(st.sampled_from(["none"] * 11 + ["cut", "bad stream", "trailing", "no separator"]))
    if damage == "cut":
        compressed = compressed[: draw(st.integers(0, len(compressed)))]
    elif damage == "bad stream":
        compressed = b"\x78\x9c\xff\xff" + compressed[4:]
    elif damage == "trailing":
        compressed = compressed + b"trailing"
    if kind == b"zTXt":
        body = keyword + b"\0" + draw(st.sampled_from([b"\0", b"\0", b"\x01"])) + compressed
    elif kind == b"iTXt":
        flag = draw(st.sampled_from([b"\0", b"\x01", b"\x02"]))
        header = keyword + b"\0" + flag + b"\0" + draw(st.sampled_from([b"", b"en", b"\xff"])) + b"\0" + b"\0"
        payload = compressed if flag == b"\x01" else text
        body = header + payload if draw(st.integers(0, 9)) else keyword + b"\0" + flag  # or cut after the flag
    else:  # tEXt (Latin-1: the UTF-8 bytes read as mojibake, which is what readers do)
        body = keyword + b"\0" + text
    if damage == "no separator":
        body = body.replace(b"\0", b"", 1)  # no keyword separator
    return png_chunk(kind, body)


@contextlib.contextmanager
def text_limit(limit: int):
    """png_text's limit on text set to ``limit``, and what SaveImage embeds with it (as in
    nodeflow.formats.png: 1 MiB less, here half), so that saved images still read back."""
    from nodeflow.formats import png, png_text

    saved = png_text.MAX_TEXT_BYTES, png.MAX_EMBEDDED_BYTES
    png_text.MAX_TEXT_BYTES = limit
    png.MAX_EMBEDDED_BYTES = min(saved[1], limit // 2)
    try:
        yield
    finally:
        png_text.MAX_TEXT_BYTES, png.MAX_EMBEDDED_BYTES = saved


# ----- settings files -------------------------------------------------------------------------

def to_toml(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(str(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(map(to_toml, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)} = {to_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


ABSOLUTE = "@@ABSOLUTE@@"  # replaced by the example's folder when written
safe_segments = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/~"), min_size=1, max_size=12).map(
    lambda segment: "dot" if segment in (".", "..") else segment)  # nothing leads out of the example's folder
settings_paths = st.one_of(
    st.sampled_from(["out", ".", "sub/out", "input", "~nodeflow-fuzz-nobody/x", "", "a\0b", "x" * 300, "x" * 5000,
                     "a/" * 300, "\U0001f4a5/\u00e9", " ", "\\", "in\nput", "settings.toml", "input/tiny.png"]),
    st.lists(safe_segments, min_size=1, max_size=4).map("/".join),
    st.sampled_from(["out", "x" * 300, "input", "a\0"]).map(lambda name: ABSOLUTE + "/" + name))
toml_values = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.sampled_from(
    [Raw("1e999"), Raw("-1e999"), Raw("9" * 5000), Raw("99999999999999999999"), Raw("0x7fffffffffffffff"), Raw("1979-05-27"),
     Raw("1979-05-27T07:32:00Z"), Raw("07:32:00"), Raw("'''multi\nline'''"), Raw("+inf"), Raw("-nan"), Raw("1_000")]),
    settings_paths, st.lists(settings_paths, max_size=3), st.dictionaries(st.sampled_from(["cpu", "x"]), st.integers(), max_size=2))


@st.composite
def settings_documents(draw) -> str:
    lines = []
    for key in draw(st.lists(st.sampled_from(["models", "output", "input", "custom_nodes", "preview_every", "cache", "model", "\u00e9"]),
                             unique=True, max_size=5)):
        value = draw({"models": st.lists(settings_paths, max_size=3) | settings_paths | toml_values,
                      "preview_every": st.sampled_from([0, 1, 1000, -1, 2**63 - 1, Raw("9" * 5000), Raw("1e999"), 1.5, True])
                      | toml_values}.get(key, settings_paths | toml_values))
        lines.append(f"{json.dumps(key, ensure_ascii=False)} = {to_toml(value)}")
    if draw(st.booleans()):
        lines.append("[cache]")
        for device in draw(st.lists(st.sampled_from(["cpu", "cuda", "mps", "tpu", ""]), unique=True, max_size=3)):
            value = draw(st.sampled_from([0, 1, 8, 2**20, 2**20 + 1, -1, Raw("inf"), Raw("nan"), Raw("1e308"), Raw("1e999"),
                                          Raw("-0.0"), Raw("9" * 5000), 0.5, "8", True]) | toml_values)
            lines.append(f"{json.dumps(device)} = {to_toml(value)}")
    if rarely(draw, 10):
        lines.append("models = " + "[" * draw(st.sampled_from([10, 200, 1000])) + "]" * 10)
    if rarely(draw, 10):
        lines.insert(0, draw(st.sampled_from(["[cache]\ncpu = 1\n[cache]", "models = 1\nmodels = 2", "= 1", "\0", "[[cache]]"])))
    return "\n".join(lines) + "\n"


SMALL_WORKFLOW = ('{"format": "nodeflow-workflow", "version": 1, "nodes": {'
                  '"1": {"type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}, '
                  '"2": {"type": "LoadImage", "inputs": {"image": "tiny.png"}}, '
                  '"3": {"type": "ImageBlend", "inputs": {}}, '
                  '"9": {"type": "SaveImage", "inputs": {"filename_prefix": "out"}}}, '
                  '"links": [{"from": ["1", 0], "to": ["3", "image1"]}, {"from": ["2", 0], "to": ["3", "image2"]}, '
                  '{"from": ["3", 0], "to": ["9", "images"]}]}')


#: Lists the models folders (a checkpoint choice), and fails validation: no checkpoint is there.
MODEL_WORKFLOW = ('{"format": "nodeflow-workflow", "version": 1, "nodes": {'
                  '"4": {"type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"}}, '
                  '"5": {"type": "VAELoader", "inputs": {"vae_name": "vae.safetensors"}}, '
                  '"8": {"type": "VAEDecode", "inputs": {}}, "9": {"type": "PreviewImage", "inputs": {}}}, '
                  '"links": [{"from": ["5", 0], "to": ["8", "vae"]}, {"from": ["8", 0], "to": ["9", "images"]}]}')


# ----- the properties -------------------------------------------------------------------------

def overrides(graph: FGraph):
    """``--set NODE.INPUT=VALUE`` arguments for nodes of the graph (or not)."""
    ids = [node.id for node in graph.nodes if "\0" not in node.id] or ["1"]  # no NUL in a real argument
    target_text = st.builds(lambda node_id, name: f"{node_id}.{name}", st.sampled_from(ids),
                            st.sampled_from(["width", "seed", "color", "image", "filename_prefix", "x"]))
    value_text = st.one_of(st.sampled_from(["8", "-1", "1e999", "nan", "0x10", "\u00b2", "9" * 5000, "[" * 5000, "{", "true",
                                            "\"x\"", "[1, 2]", "", "tiny.png", "out",
                                            "x\udcff"]),  # the byte 0xff in an argument, as Python decodes it
                           odd_text.filter(lambda s: "\0" not in s))
    assignment = st.one_of(st.builds(lambda t, v: f"--set={t}={v}", target_text, value_text),
                           st.sampled_from(["--set=x", "--set==", "--set=.=", "--set=1.=2"]))
    return st.lists(assignment, max_size=2)


def run_and_read_back(box: Sandbox, workflow: Path, extra: list[str] = ()) -> None:
    """``run`` the workflow; every PNG it saved with a workflow in it must validate again."""
    before = set((box.dir / "output").rglob("*.png"))
    outcome = box.nodeflow("run", str(workflow), "--quiet", "--device", "cpu", "--config", str(box.settings),
                           *box.folders(), *extra)
    outcome.check()
    if outcome.code != 0:
        return
    from nodeflow.formats.png import read_text_chunks

    for saved in sorted(set((box.dir / "output").rglob("*.png")) - before)[:2]:
        again = box.nodeflow("validate", str(saved), "--config", str(box.settings), *box.folders())
        again.check()
        if "nodeflow" in read_text_chunks(saved):
            assert again.code == 0, f"{saved.name}, saved by the run, does not validate:\n{again.stderr[-3000:]}"


@fuzz_settings(ci_examples=300)
@given(document=workflow_documents(), data=st.data())
def test_generated_workflows_fail_cleanly_or_run(sandboxes, document, data):
    kind, content, graph = document
    with sandboxes() as box:
        path = box.write("wf.json", encode_document(content, data.draw))
        quiet = ["--quiet"] if data.draw(st.booleans()) else []
        box.nodeflow("validate", str(path), "--config", str(box.settings), *box.folders(), *quiet).check()
        if graph.runnable:
            run_and_read_back(box, path, data.draw(overrides(graph)))


@fuzz_settings(ci_examples=200)
@given(png=png_files())
def test_generated_png_workflows_fail_cleanly_or_run(sandboxes, png):
    limit, content = png
    with sandboxes() as box, text_limit(limit):
        path = box.write("wf.png", content)
        box.nodeflow("validate", str(path), "--config", str(box.settings), *box.folders()).check()
        run_and_read_back(box, path)


@fuzz_settings(ci_examples=200)
@given(text=settings_documents())
def test_generated_settings_files_fail_cleanly(sandboxes, text):
    with sandboxes() as box:
        settings_file = box.write("nodeflow.toml", text.replace(ABSOLUTE, str(box.dir)).encode("utf-8"))
        workflow = box.write("wf.json", SMALL_WORKFLOW.encode())
        for command in ("validate", "run"):
            args = [command, str(workflow), "--config", str(settings_file)]
            if command == "run":
                args += ["--device", "cpu"]
            box.nodeflow(*args).check()
        with_models = box.write("models.json", MODEL_WORKFLOW.encode())
        box.nodeflow("validate", str(with_models), "--config", str(settings_file)).check()
