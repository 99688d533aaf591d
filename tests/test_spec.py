"""Node declarations: constructors, value checks, signature checks naming the node."""

import pytest

from nodeflow.errors import NodeDeclarationError
from nodeflow.spec import (CHOICE, IMAGE, INT, LATENT, SEED_MAX, Boolean, Choice, Float, Input, Int,
                           Output, String, node, spec_of)


def test_decorator_records_the_spec_and_returns_the_function():
    @node("Thing", display="A Thing", category="test/sub",
          inputs=[Input("image", IMAGE), Int("n", 2, min=1, max=8), Float("f", 0.5, min=0, max=1)],
          outputs=[Output(LATENT), Output(INT, "count")], version=3)
    def thing(image, n: int, f: float, ctx):
        """Makes a thing.

        Longer text that is not the description."""
        return ({}, n)

    spec = spec_of(thing)
    assert thing(None, 2, 0.1, None) == ({}, 2)  # still a plain function
    assert (spec.id, spec.display, spec.category, spec.version) == ("Thing", "A Thing", "test/sub", 3)
    assert spec.description == "Makes a thing."
    assert spec.wants_context and not spec.output_node and spec.idempotent
    assert [o.label for o in spec.outputs] == ["LATENT", "count"]
    assert [i.name for i in spec.widget_inputs] == ["n", "f"]
    assert spec.input("image").type == IMAGE and spec.input("missing") is None


@pytest.mark.parametrize("make, value, problem", [
    (lambda: Int("n", 5, min=0, max=10), 11, "above the maximum 10"),
    (lambda: Int("n", 5, min=0, max=10), -1, "below the minimum 0"),
    (lambda: Int("n", 5), 2.5, "expected int"),
    (lambda: Int("n", 5), True, "expected a number"),
    (lambda: Float("x", 1.0, max=2.0), "a", "expected float"),
    (lambda: String("s"), 3, "expected string"),
    (lambda: Boolean("b", True), 1, "expected boolean"),
    (lambda: Choice("c", ["a", "b"]), "z", "not one of: 'a', 'b'"),
    (lambda: Int("seed", 0, seed=True), SEED_MAX + 1, "above the maximum"),
])
def test_values_are_checked_with_a_user_facing_message(make, value, problem):
    assert problem in make().check_value(value)


def test_valid_values_pass():
    assert Int("n", 5, min=0, max=10).check_value(10) is None
    assert Float("x", 1.0, min=0.0).check_value(3) is None  # an int is a fine float
    assert Int("seed", 0, seed=True).check_value(SEED_MAX) is None
    assert Choice("c", ["a", "b"]).default == "a"


def test_computed_choices_need_paths_and_use_them():
    choice = Choice("ckpt", lambda paths: paths["files"])
    assert choice.type == CHOICE and choice.has_computed_choices
    assert choice.check_value("anything") is None  # no paths: cannot be checked yet
    assert choice.check_value("x.safetensors", {"files": ["x.safetensors"]}) is None
    assert "not one of" in choice.check_value("y", {"files": ["x.safetensors"]})


def test_validate_callables_report_value_errors():
    def no_dots(value):
        if ".." in value:
            raise ValueError("must stay inside the output folder")

    assert String("prefix", "x", validate=no_dots).check_value("../up") == \
        "must stay inside the output folder"


@pytest.mark.parametrize("declare, message", [
    (lambda: node("A", inputs=[Int("w", 1)])(lambda h: None), "missing from the function's parameters: w"),
    (lambda: node("B", inputs=[])(lambda extra: None), "parameter 'extra' is not a declared input"),
    (lambda: node("C", inputs=[Int("w", 1), Int("w", 2)])(lambda w: None), "declared twice: w"),
    (lambda: node("D", inputs=[Int("w", 50, max=10)])(lambda w: None), "default of input 'w'"),
    (lambda: node("E", inputs=[Choice("c", ["a"], "b")])(lambda c: None), "default of input 'c'"),
    (lambda: node("F", outputs=["IMAGE"])(lambda: None), "is not an output"),
    (lambda: node("G", inputs=[Input("x", "image")])(lambda x: None), "unknown type 'image'"),
])
def test_declaration_mismatches_name_the_node(declare, message):
    with pytest.raises(NodeDeclarationError) as caught:
        declare()
    assert message in str(caught.value) and repr(str(caught.value).split("'")[1]) in str(caught.value)


def test_kwargs_functions_and_optional_defaults_are_accepted():
    @node("Flexible", inputs=[Int("a", 1), Boolean("flag", False, optional=True)])
    def flexible(ctx=None, **values):
        return None

    assert spec_of(flexible).wants_context


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused(value):
    from nodeflow.spec import Float

    assert "finite" in Float("cfg", 8.0, min=0.0, max=100.0).check_value(value)


def test_nul_characters_in_text_are_refused():
    from nodeflow.spec import String

    assert "NUL" in String("filename_prefix", "x").check_value("a\0b")
    assert String("filename_prefix", "x").check_value("ab") is None


def test_an_unknown_choice_lists_every_fixed_option_and_the_first_files():
    names = [f"sampler_{i}" for i in range(40)]
    problem = Choice("sampler_name", names).check_value("nope")
    assert all(repr(name) in problem for name in names) and "..." not in problem
    files = Choice("ckpt_name", lambda paths: [f"m{i}.safetensors" for i in range(20)])
    problem = files.check_value("nope", {})
    assert "'m7.safetensors'" in problem and "'m8.safetensors'" not in problem and "(20 in all)" in problem
