"""What the node library panel lists: node types grouped by category, filtered by a search.

The panel (node_library.py) builds its tree once from ``category_tree`` and, on each keystroke,
only shows or hides items by ``matching_ids`` and ``categories_with``: with ~200 node types a
search never rebuilds the tree. The categories are the add menu's (app.py): the first part of a
node's category is the top level, hidden ``_``-categories (ComfyUI's "_for_testing") are left
out; deeper parts ("sampling/custom_sampling/samplers") nest inside it.

No dearpygui here: tested without a display.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LibraryEntry:
    """One node type as the library lists it."""

    id: str
    display: str
    category: str
    haystack: str  # what a search looks in, lower case: name, id, category and description


@dataclass
class Category:
    """A category of the tree: its node types and its sub-categories, both sorted by name."""

    name: str  # this level's part of the category ("samplers")
    path: str  # the whole category ("sampling/custom_sampling/samplers")
    entries: list[LibraryEntry] = field(default_factory=list)
    children: list[Category] = field(default_factory=list)


def is_listed(spec) -> bool:
    """Whether a node type is offered to users (the add menu leaves out ``_``-categories)."""
    return not spec.category.startswith("_")


def library_entries(registry) -> list[LibraryEntry]:
    """The listed node types, by category then name."""
    entries = [LibraryEntry(spec.id, spec.display, spec.category,
                            " ".join((spec.display, spec.id, spec.category, spec.description)).lower())
               for spec in registry if is_listed(spec)]
    return sorted(entries, key=lambda entry: (entry.category.lower(), entry.display.lower()))


def category_tree(entries: list[LibraryEntry]) -> list[Category]:
    """The top-level categories (sorted), each holding its node types and nested sub-categories."""
    root = Category("", "")
    for entry in entries:
        node = root
        for part in entry.category.split("/"):
            node = _child(node, part)
        node.entries.append(entry)
    _sort(root)
    return root.children


def _child(parent: Category, name: str) -> Category:
    for child in parent.children:
        if child.name == name:
            return child
    child = Category(name, f"{parent.path}/{name}" if parent.path else name)
    parent.children.append(child)
    return child


def _sort(category: Category) -> None:
    category.entries.sort(key=lambda entry: entry.display.lower())
    category.children.sort(key=lambda child: child.name.lower())
    for child in category.children:
        _sort(child)


def matching_ids(entries: list[LibraryEntry], text: str) -> set[str]:
    """The ids of the entries matching a search: every word of ``text`` appears in the entry's
    name, id, category or description ("flip latent" finds Flip Latent); empty text: all."""
    words = text.lower().split()
    return {entry.id for entry in entries if all(word in entry.haystack for word in words)}


def categories_with(tree: list[Category], ids: set[str]) -> set[str]:
    """The paths of the categories holding one of ``ids``, directly or in a sub-category."""
    found: set[str] = set()

    def visit(category: Category) -> bool:
        has = any(entry.id in ids for entry in category.entries)
        for child in category.children:
            has = visit(child) or has
        if has:
            found.add(category.path)
        return has

    for top in tree:
        visit(top)
    return found


def describe(spec) -> str:
    """A node type's description from its declaration; without one, what it takes and gives."""
    return spec.description or ports_summary(spec)


def ports_summary(spec) -> str:
    """"Inputs: model (MODEL), seed (INT)\nOutputs: LATENT" for a node type."""
    inputs = ", ".join(f"{s.name} ({s.type})" for s in spec.inputs) or "none"
    outputs = ", ".join(o.label if o.label == o.type else f"{o.label} ({o.type})" for o in spec.outputs) or "none"
    return f"Inputs: {inputs}\nOutputs: {outputs}"
