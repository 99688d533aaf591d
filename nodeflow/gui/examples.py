"""File > Examples and the missing-models check on opening (no dearpygui here: app.py and
examples_menu.py show them).

``list_examples`` lists the workflows in a folder (the project's workflows/) with a one-line
description each, from the folder's README.md (lines such as ``- `txt2img.json`: text to
image``), else the file's name. ``missing_models`` names the model files a workflow's loaders ask
for that are not in the models folders, with the folder each belongs in (models/checkpoints, ...).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from nodeflow.errors import NodeflowError
from nodeflow.runtime.paths import KIND_FOLDERS, project_assets_dir
from nodeflow.spec import ModelFile

logger = logging.getLogger(__name__)

_README_LINE = re.compile(r"^\s*[-*]\s*`?([^`\s:]+\.json)`?\s*(?::|-|—)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Example:
    path: Path
    description: str

    @property
    def label(self) -> str:
        """As the menu lists it: "txt2img.json: text to image"."""
        return self.path.name if self.description == self.path.name else f"{self.path.name}: {self.description}"


@dataclass(frozen=True)
class MissingModel:
    """A model file a node names that none of the models folders holds."""

    node_id: str
    input_name: str
    file: str
    folder: Path  # where it belongs: the first models folder's folder for its kind

    def __str__(self) -> str:
        return f"{self.file} -> {self.folder} (node {self.node_id}, {self.input_name})"


def project_examples_dir() -> Path:
    """workflows/ next to the nodeflow package (the repository's, for an editable install)."""
    return project_assets_dir().parent / "workflows"


def readme_descriptions(folder: Path) -> dict[str, str]:
    """File name -> description from ``folder/README.md`` (empty when it has none or cannot be read)."""
    readme = folder / "README.md"
    try:
        text = readme.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        logger.warning("cannot read the examples' descriptions in %s: %s", readme, error)
        return {}
    return {match[1]: match[2] for match in map(_README_LINE.match, text.splitlines()) if match}


def list_examples(folder: Path) -> list[Example]:
    """The workflows (``*.json``) in ``folder``, sorted by name, each with its description."""
    descriptions = readme_descriptions(folder)
    return [Example(path, descriptions.get(path.name, path.name)) for path in sorted(Path(folder).glob("*.json"))]


def missing_models(workflow, registry, paths) -> list[MissingModel]:
    """The model files the workflow's active loaders name that the models folders lack."""
    missing = []
    for node_id, node in workflow.nodes.items():
        if node.type not in registry or node.mode == "muted":
            continue
        fingerprint = registry.get(node.type).fingerprint
        if not isinstance(fingerprint, ModelFile):
            continue
        for input_name in fingerprint.input_names:
            name = node.inputs.get(input_name)
            if isinstance(name, str) and name and not _resolves(paths, fingerprint.kind, name):
                missing.append(MissingModel(node_id, input_name, name, model_folder(paths, fingerprint.kind)))
    return missing


def _resolves(paths, kind: str, name: str) -> bool:
    """Whether the loader will find ``name`` (as it looks: "sd15\\x.safetensors" from Windows too)."""
    try:
        paths.resolve_model(kind, name)
    except (OSError, ValueError, NodeflowError):
        return False
    return True


def model_folder(paths, kind: str) -> Path:
    """Where a model of ``kind`` belongs: e.g. models/checkpoints under the first models folder."""
    root = paths.models_dirs[0] if paths.models_dirs else Path("models")
    return Path(root) / KIND_FOLDERS[kind][0]
