"""The node library's grouping and search (library_index.py), without a display, on the real
registry (~200 node types) and on hand-made specs."""

import time

import pytest

from nodeflow.engine.registry import Registry
from nodeflow.gui.library_index import (categories_with, category_tree, describe, library_entries, matching_ids,
                                        ports_summary)
from nodeflow.spec import FLOAT, LATENT, MODEL, Input, Int, Output, node, spec_of


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def test_entries_are_the_add_menus_node_types(registry):
    """Every registered type but the hidden "_for_testing" ones, once each, by category then name."""
    entries = library_entries(registry)
    ids = [entry.id for entry in entries]
    hidden = {spec.id for spec in registry if spec.category.startswith("_")}
    assert hidden and not hidden & set(ids)
    assert sorted(ids) == sorted({spec.id for spec in registry} - hidden)
    keys = [(entry.category.lower(), entry.display.lower()) for entry in entries]
    assert keys == sorted(keys)


def test_tree_nests_sub_categories_under_the_add_menus_top_level(registry):
    tree = category_tree(library_entries(registry))
    tops = [category.name for category in tree]
    assert tops == sorted({spec.category.split("/")[0] for spec in registry if not spec.category.startswith("_")},
                          key=str.lower)
    sampling = next(category for category in tree if category.name == "sampling")
    custom = next(child for child in sampling.children if child.name == "custom_sampling")
    samplers = next(child for child in custom.children if child.name == "samplers")
    assert samplers.path == "sampling/custom_sampling/samplers"
    assert "KSamplerSelect" in [entry.id for entry in samplers.entries]
    assert "KSampler" in [entry.id for entry in sampling.entries]  # directly in "sampling"

    def count(category):
        return len(category.entries) + sum(count(child) for child in category.children)

    assert sum(count(category) for category in tree) == len(library_entries(registry))


def test_search_looks_in_name_id_category_and_description(registry):
    entries = library_entries(registry)
    assert matching_ids(entries, "") == {entry.id for entry in entries}
    assert "LatentFlip" in matching_ids(entries, "flip latent")  # every word, in any order
    assert "LatentFlip" in matching_ids(entries, "LATENTFLIP")  # the id, any case
    assert "EmptyLatentImage" in matching_ids(entries, "starting point of text-to-image")  # its description
    assert matching_ids(entries, "custom_sampling/samplers") == {
        entry.id for entry in entries if entry.category == "sampling/custom_sampling/samplers"}
    assert matching_ids(entries, "no such node anywhere") == set()


def test_categories_holding_matches_include_their_parents(registry):
    entries = library_entries(registry)
    tree = category_tree(entries)
    assert categories_with(tree, {"KSamplerSelect"}) == {
        "sampling", "sampling/custom_sampling", "sampling/custom_sampling/samplers"}
    assert categories_with(tree, set()) == set()


def test_search_is_quick_enough_for_each_keystroke(registry):
    """Filtering ~200 types with a few words, and finding the categories to show, as on a keystroke."""
    entries = library_entries(registry)
    tree = category_tree(entries)
    started = time.perf_counter()
    for text in ("l", "la", "lat", "late", "laten", "latent", "latent f", "latent fl"):
        categories_with(tree, matching_ids(entries, text))
    assert time.perf_counter() - started < 0.25  # about 2 ms here; a rebuild of the tree would be far more


@node("Described", category="test", inputs=[Int("steps", 20)], outputs=[Output(LATENT)])
def described(steps):
    """Does one thing well."""


@node("Undescribed", category="test", description="", inputs=[Input("model", MODEL), Int("steps", 20)],
      outputs=[Output(MODEL), Output(FLOAT, "scale")])
def undescribed(model, steps):
    pass


def test_description_from_the_declaration_else_its_ports():
    assert describe(spec_of(described)) == "Does one thing well."
    assert describe(spec_of(undescribed)) == ports_summary(spec_of(undescribed)) == \
        "Inputs: model (MODEL), steps (INT)\nOutputs: MODEL, scale (FLOAT)"
