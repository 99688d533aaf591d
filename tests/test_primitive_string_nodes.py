"""Primitive*, String*, Regex* and PreviewAny nodes (issue 16): results against Python's own str
methods and ``re`` (what ComfyUI's nodes call), bounds on hostile patterns, and a ComfyUI API
workflow with PrimitiveInt/PrimitiveString feeding a sampler and PreviewAny showing values."""

from __future__ import annotations

import itertools
import json
import re
import time

import pytest
import torch

from nodeflow.engine import events as ev
from nodeflow.engine.executor import Executor
from nodeflow.engine.registry import Registry
from nodeflow.engine.validate import validate
from nodeflow.errors import NodeError, NodeInputError
from nodeflow.formats.comfy import from_comfy_api, from_comfy_ui
from nodeflow.runtime.paths import Paths
from nodeflow.text import string_ops
from nodes import primitives, strings
from tests.factories import write_tiny_checkpoint

NEW_NODES = ["PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean",
             "StringConcatenate", "StringSubstring", "StringLength", "CaseConverter", "StringTrim", "StringReplace",
             "StringContains", "StringCompare", "RegexMatch", "RegexExtract", "RegexReplace", "PreviewAny"]
TEXTS = ["", "hello", "Hello World", "  padded\t\n", "hello wORLD's café", "straße ǆ ﬁ", "ΣΑΣ", "a\nb\r\nc ", "x" * 40]


@pytest.fixture(scope="module")
def registry():
    return Registry.load(entry_point_packs=False)


def test_every_node_is_declared_as_comfyuis(registry):
    from tests.test_comfy_declarations import SHARED, node_problems

    assert set(NEW_NODES) <= set(SHARED) and set(NEW_NODES) <= set(registry.specs)
    assert {node: node_problems(node) for node in NEW_NODES} == {node: [] for node in NEW_NODES}


# ----- primitives ---------------------------------------------------------------------------------

@pytest.mark.parametrize("function, value", [
    (primitives.primitive_int, -(2**63 - 1)), (primitives.primitive_int, 12345678901234),
    (primitives.primitive_float, -0.5), (primitives.primitive_string, "a fox"),
    (primitives.primitive_string_multiline, "line 1\nline 2"), (primitives.primitive_boolean, True),
    (primitives.primitive_boolean, False)])
def test_primitives_pass_their_value_on(function, value):
    [out] = function(value)
    assert out == value and type(out) is type(value)


def test_primitive_ranges_are_comfyuis(registry):
    value = registry.get("PrimitiveInt").input("value")
    assert value.check_value(2**63 - 1) is None and value.check_value(-(2**63 - 1)) is None
    assert "above the maximum" in value.check_value(2**63) and "below the minimum" in value.check_value(-(2**63))
    assert registry.get("PrimitiveFloat").input("value").check_value(float("inf")) is not None
    assert registry.get("PrimitiveBoolean").input("value").check_value(1) is not None


# ----- plain string nodes -------------------------------------------------------------------------

@pytest.mark.parametrize("text", TEXTS)
def test_string_nodes_follow_pythons_str_methods(text):
    assert strings.string_length(text) == (len(text),)
    expected_case = {"UPPERCASE": text.upper(), "lowercase": text.lower(), "Capitalize": text.capitalize(),
                     "Title Case": text.title()}
    assert {mode: strings.case_converter(text, mode)[0] for mode in strings.CASE_MODES} == expected_case
    assert [strings.string_trim(text, mode)[0] for mode in ("Both", "Left", "Right")] == \
        [text.strip(), text.lstrip(), text.rstrip()]
    assert strings.string_concatenate(text, "tail", ", ") == (text + ", tail",)
    assert strings.string_concatenate("", "", "") == ("",)


def test_case_converter_examples():
    assert strings.case_converter("hello wORLD's", "Title Case") == ("Hello World'S",)  # str.title's rule
    assert strings.case_converter("hELLO World", "Capitalize") == ("Hello world",)
    assert strings.case_converter("straße", "UPPERCASE") == ("STRASSE",)


def test_substring_slices_as_python_does_with_negative_positions():
    text = "abcdefg"
    for start, end in itertools.product(range(-9, 10), repeat=2):
        assert strings.string_substring(text, start, end) == (text[start:end],)
    assert strings.string_substring(text, -3, -1) == ("ef",)
    assert strings.string_substring(text, 2, 0) == ("",)
    assert strings.string_substring("", -1, 5) == ("",)


def test_replace_contains_compare():
    assert strings.string_replace("a-b-c", "-", "+") == ("a+b+c",)
    assert strings.string_replace("abc", "", "|") == ("abc".replace("", "|"),) == ("|a|b|c|",)
    assert strings.string_replace("", "x", "y") == ("",)
    assert strings.string_contains("Hello World", "world", True) == (False,)
    assert strings.string_contains("Hello World", "world", False) == (True,)
    assert strings.string_contains("anything", "", True) == (True,)
    cases = {("Starts With", True): False, ("Starts With", False): True, ("Ends With", True): False,
             ("Ends With", False): False, ("Equal", True): False, ("Equal", False): False}
    assert {key: strings.string_compare("Hello World", "hello", *key)[0] for key in cases} == cases
    assert strings.string_compare("World", "WORLD", "Equal", False) == (True,)
    assert strings.string_compare("Hello World", "WORLD", "Ends With", False) == (True,)
    assert strings.string_compare("", "", "Equal", True) == (True,)


def test_replace_that_would_explode_is_refused_naming_the_input():
    with pytest.raises(NodeInputError) as caught:
        strings.string_replace("a" * 100_000, "", "x" * 200)  # 20 million characters
    assert caught.value.input_name == "replace" and "\n" not in str(caught.value)


# ----- regular expressions ------------------------------------------------------------------------

PATTERNS = [r"o", r"l+", r"(l)(o)?", r"^\w+", r"\w+$", r"x*", r"(?P<word>\w)(\w)", r"a.b", r"^b", r"(?=(o))",
            r"WORLD", r"\d+", r"(a)|(b)", r""]
SUBJECTS = ["hello world", "Hello\nWORLD", "a\nb axb", "", "123 abc 45", "ab"]
FLAGS = list(itertools.product([True, False], repeat=3))


def re_flags(case_insensitive, multiline, dotall):
    return (re.I if case_insensitive else 0) | (re.M if multiline else 0) | (re.S if dotall else 0)


def comfy_extract(string, pattern, mode, flags, group_index):
    """ComfyUI's RegexExtract written with re (None groups shown as empty text)."""
    if mode == "First Match":
        match = re.search(pattern, string, flags)
        return match.group(0) if match else ""
    if mode == "All Matches":
        found = re.findall(pattern, string, flags)
        return "\n".join(m[0] if isinstance(m, tuple) else m for m in found)
    if mode == "First Group":
        match = re.search(pattern, string, flags)
        return (match.group(group_index) or "") if match and len(match.groups()) >= group_index else ""
    return "\n".join(m.group(group_index) or "" for m in re.finditer(pattern, string, flags)
                     if m.groups() and len(m.groups()) >= group_index)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_regex_nodes_agree_with_re(pattern):
    for subject, flag_set in itertools.product(SUBJECTS, FLAGS):
        flags = re_flags(*flag_set)
        assert strings.regex_match(subject, pattern, *flag_set) == (re.search(pattern, subject, flags) is not None,)
        for mode, group in itertools.product(strings.EXTRACT_MODES, (0, 1, 2, 3)):
            assert strings.regex_extract(subject, pattern, mode, *flag_set, group) == \
                (comfy_extract(subject, pattern, mode, flags, group),), (subject, mode, group, flag_set)
        for replacement, count in itertools.product(["#", r"<\g<0>>", "", "\\n"], (0, 1, 2)):
            assert strings.regex_replace(subject, pattern, replacement, *flag_set, count) == \
                (re.sub(pattern, replacement, subject, count=count, flags=flags),)


def test_regex_replace_groups_and_defaults():
    assert strings.regex_replace("John Smith", r"(\w+) (\w+)", r"\2, \1") == ("Smith, John",)
    assert strings.regex_replace("abc", r"(?P<x>b)", r"[\g<x>]") == ("a[b]c",)
    assert strings.regex_replace("a b", r"(a)|(b)", r"<\2>") == ("<> <b>",)  # an unmatched group: empty
    assert strings.regex_replace("AaA", "a", "-") == ("---",)  # case_insensitive by default
    assert strings.regex_replace("AaA", "a", "-", case_insensitive=False) == ("A-A",)
    assert strings.regex_extract("Key=1, key=22", r"key=(\d+)", "All Groups", True, False, False, 1) == ("1\n22",)
    assert strings.regex_extract("Key=1, key=22", r"key=(\d+)", "All Matches", False, False, False, 1) == ("22",)


@pytest.mark.parametrize("node, arguments", [
    (strings.regex_match, ("text", "(", True, False, False)),
    (strings.regex_extract, ("text", "a{2,1}", "First Match", True, False, False, 1)),
    (strings.regex_replace, ("text", "[z-a]", "x"))])
def test_a_bad_pattern_is_an_error_naming_the_input(node, arguments):
    with pytest.raises(NodeInputError) as caught:
        node(*arguments)
    assert caught.value.input_name == "regex_pattern"
    assert "not a valid regular expression" in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_replacement_names_the_replace_input():
    for replacement in (r"\q", r"\3", r"\g<nope>"):
        with pytest.raises(NodeInputError) as caught:
            strings.regex_replace("aaa", "(a)", replacement)
        assert caught.value.input_name == "replace", replacement


def test_a_literal_bad_pattern_is_found_by_validation(registry):
    workflow = from_comfy_api({
        "1": {"class_type": "RegexMatch", "inputs": {"string": "abc", "regex_pattern": "(unclosed",
                                                     "case_insensitive": True, "multiline": False, "dotall": False}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}, registry)
    problems = validate(workflow, registry)
    assert [(p.node_id, p.input) for p in problems] == [("1", "regex_pattern")]
    assert "missing ), unterminated subpattern" in str(problems[0])


# Unbounded, these patterns take years; bounded, a node makes at most three matching calls of
# REGEX_SECONDS each. The bound leaves room for a busy machine (wall-clock time: 2.0 s failed at a
# load of 6), and still tells a bounded call from an unbounded one.
BOUND_S = 10 * string_ops.REGEX_SECONDS


def within(call):
    """``call()``'s result or its NodeInputError, and the time it took."""
    start = time.perf_counter()
    try:
        outcome = call()
    except NodeInputError as error:
        outcome = error
    return outcome, time.perf_counter() - start


@pytest.mark.parametrize("pattern, text", [
    (r"(a+)+$", "a" * 50_000 + "!"),
    (r"(a|aa)+$", "a" * 5_000 + "!"),  # slow even for the regex module: refused at its time limit
    (r"(a|a?)+$", "a" * 5_000 + "!"),
    (r"^(\w+\s?)*$", "word " * 2_000 + "!")], ids=["nested-plus", "alternation", "optional", "words"])
def test_catastrophic_patterns_are_bounded_in_time(pattern, text):
    for call in (lambda: strings.regex_match(text, pattern, True, False, False),
                 lambda: strings.regex_extract(text, pattern, "All Groups", True, True, False, 1),
                 lambda: strings.regex_replace(text, pattern, "x")):
        outcome, seconds = within(call)
        assert seconds < BOUND_S, (pattern, seconds)
        if isinstance(outcome, NodeInputError):
            assert outcome.input_name == "regex_pattern" and "longer than" in str(outcome)


def test_a_slow_match_is_refused_not_answered():
    outcome, seconds = within(lambda: strings.regex_match("a" * 5_000 + "!", r"(a|aa)+$", False, False, False))
    assert isinstance(outcome, NodeInputError) and seconds < BOUND_S


@pytest.mark.parametrize("pattern, what", [
    ("(?:a{1000}){1000}", "multiply out"), ("((a{100}){100}){100}", "multiply out"),
    ("a" * (string_ops.MAX_PATTERN_CHARS + 1), "characters, more than"),
    ("(" * 600 + ")" * 600, "")],  # re's parser may refuse the depth itself, or the pattern passes
    ids=["unrolled", "nested-unrolled", "too-long", "deep"])
def test_patterns_too_big_to_compile_are_refused_quickly(pattern, what):
    outcome, seconds = within(lambda: strings.regex_match("aaa", pattern, False, False, False))
    assert seconds < BOUND_S
    if what:
        assert isinstance(outcome, NodeInputError) and what in str(outcome)
        assert outcome.input_name == "regex_pattern"


def test_results_and_texts_are_bounded():
    with pytest.raises(NodeInputError) as caught:  # every position captures the rest: ~50 M characters
        strings.regex_extract("a" * 10_000, r"(?=(.*))", "All Groups", False, False, False, 1)
    assert caught.value.input_name == "regex_pattern" and "result would be longer" in str(caught.value)
    with pytest.raises(NodeInputError) as caught:
        strings.regex_replace("a" * 100_000, "", "x" * 200)
    assert caught.value.input_name == "replace"
    with pytest.raises(NodeInputError) as caught:
        strings.regex_replace("a" * 1_000_000, "(a+)", "\\1" * 11)  # 11 million characters
    assert caught.value.input_name == "replace"
    with pytest.raises(NodeInputError) as caught:
        strings.regex_match("a" * (string_ops.MAX_TEXT_CHARS + 1), "a", False, False, False)
    assert caught.value.input_name == "string"


# ----- PreviewAny ---------------------------------------------------------------------------------

class Shown:
    node_id = "7"

    def __init__(self):
        self.events = []

    def on_event(self, event):
        self.events.append(event)


def preview(value):
    ctx = Shown()
    report = strings.preview_any(value, ctx)
    [event] = ctx.events
    assert isinstance(event, ev.TextShown) and event.node_id == "7" and report == {"text": [event.text]}
    return event.text


def test_preview_any_shows_values_as_comfyui_does():
    assert preview("some text") == "some text"
    assert [preview(v) for v in (3, -2.5, True, None)] == ["3", "-2.5", "True", "None"]
    data = {"a": [1, 2.5, "x"], "b": None}
    assert preview(data) == json.dumps(data, indent=4)
    tensor = torch.arange(2000.0)  # summarised: edge items only
    default = str(tensor)
    torch.set_printoptions(edgeitems=6)
    try:
        expected = str(tensor)
    finally:
        torch.set_printoptions(profile="default")
    assert preview(tensor) == expected and "5.0000e+00" in expected and "5.0000e+00" not in default
    assert str(tensor) == default  # the global print options are left as they were
    assert len(preview("x" * (string_ops.MAX_PREVIEW_CHARS + 10))) < string_ops.MAX_PREVIEW_CHARS + 100


# ----- ComfyUI workflows --------------------------------------------------------------------------

def primitive_graph(seed_source, text_source, seed=5, text="a red circle"):
    """ComfyUI API workflow: txt2img at 64 x 48, 2 steps, with the seed and prompt from
    PrimitiveInt/PrimitiveString (or literals) and PreviewAny/PreviewImage outputs."""
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    if seed_source:
        graph["10"] = {"class_type": "PrimitiveInt", "inputs": {"value": seed}}
        graph["3"]["inputs"]["seed"] = ["10", 0]
        graph["12"] = {"class_type": "PreviewAny", "inputs": {"source": ["10", 0]}}
    if text_source:
        graph["11"] = {"class_type": "PrimitiveString", "inputs": {"value": text}}
        graph["6"]["inputs"]["text"] = ["11", 0]
        graph["13"] = {"class_type": "StringLength", "inputs": {"string": ["11", 0]}}
        graph["14"] = {"class_type": "PreviewAny", "inputs": {"source": ["13", 0]}}
    return graph


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("primitives")
    write_tiny_checkpoint(root / "models" / "checkpoints" / "tiny.safetensors")
    return Paths(models_dirs=(root / "models",), output_dir=root / "out", input_dir=root / "in",
                 temp_dir=root / "tmp", assets_dir=root / "no-assets")


def run_graph(graph, paths, registry):
    workflow = from_comfy_api(graph, registry)
    assert validate(workflow, registry, paths) == []
    shown = []
    result = Executor(registry, paths).run(workflow, on_event=shown.append)
    image = next(e.images for e in shown if isinstance(e, ev.ImagesShown))
    texts = {e.node_id: e.text for e in shown if isinstance(e, ev.TextShown)}
    return workflow, result, image, texts


def test_primitive_nodes_feed_a_sampler_and_preview_any_shows_values(model_paths, registry):
    workflow, result, image, texts = run_graph(primitive_graph(True, True), model_paths, registry)
    assert workflow.nodes["10"].type == "PrimitiveInt" and workflow.input_link("3", "seed") is not None
    assert workflow.input_link("6", "text") is not None
    assert texts == {"12": "5", "14": str(len("a red circle"))}
    assert result.outputs["12"] == ({"text": ["5"]},)
    _, _, literal, _ = run_graph(primitive_graph(False, False), model_paths, registry)
    assert torch.equal(image, literal)  # the primitives' values reached the sampler and the prompt
    _, _, other_seed, _ = run_graph(primitive_graph(True, True, seed=6), model_paths, registry)
    _, _, other_text, _ = run_graph(primitive_graph(True, True, text="a blue square"), model_paths, registry)
    assert not torch.equal(image, other_seed) and not torch.equal(image, other_text)


def test_a_bad_pattern_fails_the_run_naming_node_and_input(registry, model_paths):
    graph = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "(a|aa)+$"}},
             "2": {"class_type": "RegexMatch", "inputs": {"string": "a" * 5_000 + "!", "regex_pattern": ["1", 0],
                                                          "case_insensitive": True, "multiline": False,
                                                          "dotall": False}},
             "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
    workflow = from_comfy_api(graph, registry)
    assert validate(workflow, registry, model_paths) == []  # a linked pattern is only known when it runs
    with pytest.raises(NodeError) as caught:
        Executor(registry, model_paths).run(workflow)
    assert "regex_pattern" in str(caught.value) and "RegexMatch" in str(caught.value)


def test_ui_workflows_keep_real_primitive_nodes(registry):
    nodes = [{"id": 1, "type": "PrimitiveInt", "widgets_values": [640, "fixed"], "outputs": [{"type": "INT"}]},
             {"id": 2, "type": "EmptyLatentImage", "widgets_values": [512, 512, 1],
              "inputs": [{"name": "width", "link": 1, "widget": {"name": "width"}}]},
             {"id": 3, "type": "PreviewAny", "inputs": [{"name": "source", "link": 2}]}]
    ui = {"nodes": nodes, "links": [[1, 1, 0, 2, 0, "INT"], [2, 1, 0, 3, 0, "INT"]], "version": 0.4}
    workflow = from_comfy_ui(ui, registry)
    assert workflow.nodes["1"].inputs == {"value": 640}
    assert {(l.src, l.dst, l.dst_input) for l in workflow.links} == {("1", "2", "width"), ("1", "3", "source")}
    assert validate(workflow, registry) == []


def test_cli_prints_what_preview_any_shows(tmp_path, monkeypatch, capsys):
    from nodeflow import cli

    monkeypatch.chdir(tmp_path)
    graph = {"1": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "Hello\nWorld"}},
             "2": {"class_type": "CaseConverter", "inputs": {"string": ["1", 0], "mode": "UPPERCASE"}},
             "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
    (tmp_path / "w.json").write_text(json.dumps(graph))
    folders = ["--models-dir", str(tmp_path / "m"), "--output-dir", str(tmp_path / "o"),
               "--input-dir", str(tmp_path / "i"), "--device", "cpu"]
    assert cli.main(["run", str(tmp_path / "w.json"), "--json", *folders]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["texts"] == [{"node": "3", "text": "HELLO\nWORLD"}]
    assert "HELLO\nWORLD" in out.err
    assert cli.main(["run", str(tmp_path / "w.json"), "--quiet", *folders]) == 0
    assert "HELLO\nWORLD" in capsys.readouterr().err  # a result: shown even when quiet
