"""Provenance: what made a run's outputs, handed by the executor to output nodes so they can
write it into the files they save (the workflow, the model files and their hashes).

Output nodes get it as ``ctx.provenance``; other nodes get None. It is a record of the run, not
a service: nodes read it and never change it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeflow.engine.workflow import Workflow
from nodeflow.errors import NodeflowError
from nodeflow.spec import ModelFile

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFileUse:
    """A model file a node of the run loads (see ``nodeflow.spec.ModelFile``)."""

    node_id: str
    node_type: str
    kind: str  # the models folder: "checkpoints", "loras", "vae", ...
    name: str  # as the workflow names it
    path: Path


@dataclass(frozen=True)
class Provenance:
    """The workflow as run, the registry of its node types, and the nodes that ran in it."""

    workflow: Workflow
    registry: Any  # nodeflow.engine.registry.Registry
    paths: Any  # nodeflow.runtime.paths.Paths
    node_ids: tuple[str, ...]  # the nodes of the run (its plan), in order

    @classmethod
    def of(cls, workflow: Workflow, registry: Any, paths: Any,
           node_ids: Collection[str] | None = None) -> Provenance:
        """Provenance of running ``node_ids`` (default: every node not muted or bypassed)."""
        if node_ids is None:
            node_ids = [i for i, n in workflow.nodes.items() if n.mode == "normal"]
        return cls(workflow, registry, paths, tuple(node_ids))

    @functools.cached_property
    def model_files(self) -> tuple[ModelFileUse, ...]:
        """The model files the run's nodes load, resolved in the models folders (a name that does
        not resolve is left out: its loader reports it)."""
        found = []
        for node_id in self.node_ids:
            node = self.workflow.nodes[node_id]
            spec = self.registry.specs.get(node.type)
            fingerprint = spec.fingerprint if spec is not None else None
            if not isinstance(fingerprint, ModelFile):
                continue
            for input_name in fingerprint.input_names:  # DualCLIPLoader names two files
                name = node.inputs.get(input_name)
                if not isinstance(name, str):
                    continue
                try:
                    path = self.paths.resolve_model(fingerprint.kind, name)
                except (OSError, ValueError, NodeflowError) as error:
                    logger.debug("provenance: no file for node %s: %s", node_id, error)
                    continue
                found.append(ModelFileUse(node_id, node.type, fingerprint.kind, name, path))
        return tuple(found)

    def model_files_of(self, kind: str) -> tuple[ModelFileUse, ...]:
        return tuple(use for use in self.model_files if use.kind == kind)
