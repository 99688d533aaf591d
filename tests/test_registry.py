"""Registry sources, broken packs, duplicate ids, declaration checks."""

import pytest

from nodeflow.errors import NodeDeclarationError, UnknownNodeType
from nodeflow.runtime.paths import Paths
from nodeflow.engine.registry import Registry
from nodeflow.spec import INT, Input, Int, Output, node

CUSTOM = '''
from nodeflow.spec import node, Int, Output, INT

@node("MyConstant", category="custom", inputs=[Int("value", 1)], outputs=[Output(INT)])
def my_constant(value):
    """A custom node."""
    return (value,)
'''


def test_user_folder_packs_load_and_broken_ones_are_reported(tmp_path):
    (tmp_path / "good.py").write_text(CUSTOM)
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    registry = Registry.load(Paths(custom_nodes_dir=tmp_path), builtins=False, entry_point_packs=False)
    assert registry.get("MyConstant").description == "A custom node."
    assert len(registry.load_errors) == 1
    assert "broken.py" in registry.load_errors[0].source
    assert "does_not_exist_anywhere" in registry.load_errors[0].error


def test_duplicate_ids_name_both_packs(tmp_path):
    (tmp_path / "one.py").write_text(CUSTOM)
    (tmp_path / "two.py").write_text(CUSTOM)
    with pytest.raises(NodeDeclarationError) as caught:
        Registry.load(Paths(custom_nodes_dir=tmp_path), builtins=False, entry_point_packs=False)
    assert "one" in str(caught.value) and "two" in str(caught.value)


def test_unknown_type_names_it():
    with pytest.raises(UnknownNodeType, match="'Nope'"):
        Registry().get("Nope")


def test_declaration_must_match_the_signature():
    with pytest.raises(NodeDeclarationError, match="'Bad'.*missing.*width"):
        @node("Bad", inputs=[Int("width", 1)], outputs=[Output(INT)])
        def bad(height):
            return (height,)


def test_optional_inputs_need_defaults():
    with pytest.raises(NodeDeclarationError, match="optional input 'x' needs a default"):
        @node("Bad2", inputs=[Input("x", INT, optional=True)])
        def bad(x):
            return None


def test_builtin_packs_load_without_errors():
    registry = Registry.load(Paths(), entry_point_packs=False)
    assert registry.load_errors == []


def test_entry_point_packs_are_loaded_and_broken_ones_reported(monkeypatch):
    from importlib.metadata import EntryPoint

    import nodeflow.engine.registry as registry_module

    packs = [EntryPoint("stubs", "tests.stub_nodes", "nodeflow.nodes"),
             EntryPoint("broken", "no_such_pack_module:nodes", "nodeflow.nodes")]
    monkeypatch.setattr(registry_module, "entry_points",
                        lambda group: [p for p in packs if p.group == group])
    registry = Registry.load(Paths(), builtins=False)
    assert "Number" in registry and "Sink" in registry
    [problem] = registry.load_errors
    assert "'broken'" in problem.source and "no_such_pack_module" in problem.error


def test_extra_modules_and_listing_order(stub_registry):
    from tests import stub_nodes

    registry = Registry.load(Paths(), builtins=False, entry_point_packs=False,
                             extra_modules=["tests.stub_nodes", stub_nodes])  # twice: same functions
    assert set(registry.specs) == set(stub_registry.specs)
    listed = [(spec.category, spec.display) for spec in registry]
    assert listed == sorted(listed)


def test_a_pack_with_a_bad_declaration_is_skipped_naming_the_node(tmp_path):
    (tmp_path / "bad.py").write_text(CUSTOM.replace("def my_constant(value)", "def my_constant(other)"))
    registry = Registry.load(Paths(custom_nodes_dir=tmp_path), builtins=False, entry_point_packs=False)
    assert registry.specs == {}
    assert "'MyConstant'" in registry.load_errors[0].error
