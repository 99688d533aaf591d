"""Run a workflow: validate, plan, then evaluate nodes in topological order through the cache.

Only output nodes and their ancestors run. A node whose signature (see ``cache``) is in the
cache is not run again; its outputs are reused and a ``NodeCached`` event says so. Values a
later node no longer needs are dropped from the run as soon as possible (the cache may still
hold them). Errors name the node: a user's mistake is a ``NodeError`` without a traceback; an
unexpected exception is logged with its traceback and re-raised as a ``NodeError`` that keeps it
as its cause.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nodeflow.engine import events
from nodeflow.engine import graph as graphs
from nodeflow.engine.cache import OutputCache, signature
from nodeflow.engine.context import RunContext
from nodeflow.engine.provenance import Provenance
from nodeflow.errors import Cancelled, NodeError, NodeflowError, ValidationError
from nodeflow.runtime.paths import Paths
from nodeflow.spec import NodeSpec
from nodeflow.engine.validate import validate
from nodeflow.engine.workflow import Workflow

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run produced."""

    outputs: dict[str, tuple] = field(default_factory=dict)  # output nodes' return values
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    seconds: float = 0.0
    node_seconds: dict[str, float] = field(default_factory=dict)  # time of each node that ran


class Executor:
    """Runs workflows against a registry, keeping one output cache across runs."""

    def __init__(self, registry, paths: Paths | None = None, cache: OutputCache | None = None) -> None:
        self.registry = registry
        self.paths = paths or Paths()
        self.cache = cache if cache is not None else OutputCache()

    def run(self, workflow: Workflow, *, device: str = "cpu", dtype: str = "auto", compile: bool = False,
            vram: str = "auto", on_event: Callable[[events.Event], None] | None = None,
            cancel_event: threading.Event | None = None, preview_every: int = 1) -> RunResult:
        """Validate and run ``workflow``; raises ``ValidationError``, ``NodeError``, ``Cancelled``.
        ``preview_every``: steps between the live previews long nodes report (0: none); without
        ``on_event`` nobody sees them, so none are made (a tiny VAE's decoded preview doubled the
        time of a small txt2img). ``device``, ``dtype``, ``compile``, ``vram``: how the loaders place
        and prepare models (RunContext)."""
        if on_event is None:
            preview_every = 0
        started = time.perf_counter()
        links = graphs.active_links(workflow, self.registry)
        graph = graphs.build_graph(workflow, links)
        problems = validate(workflow, self.registry, self.paths, links=links, graph=graph)
        if problems:
            raise ValidationError(problems)
        plan = graphs.plan(workflow, self.registry, links, graph)
        provenance = Provenance.of(workflow, self.registry, self.paths, plan.order)
        context = RunContext(device=device, dtype=dtype, compile=compile, vram=vram, paths=self.paths, on_event=on_event or (lambda event: None),
                             cancel_event=cancel_event or threading.Event(), preview_every=preview_every)
        result = RunResult()
        context.on_event(events.RunStarted(plan.order))
        values: dict[str, tuple] = {}
        signatures: dict[str, str] = {}
        remaining_uses = _count_uses(plan)
        run_token = uuid.uuid4().hex  # makes non-idempotent nodes' signatures unique to this run
        for index, node_id in enumerate(plan.order, start=1):
            context.check_cancel()
            spec = self.registry.get(workflow.nodes[node_id].type, node_id)
            links = plan.input_links(node_id)
            literals = _literals(spec, workflow.nodes[node_id].inputs, links)
            try:
                signatures[node_id] = self._signature(node_id, spec, literals, links, signatures, run_token)
            except NodeError as error:
                context.on_event(events.NodeFailed(node_id, spec.id, error.message))
                raise
            outputs = self.cache.get(signatures[node_id])
            if outputs is not None:
                result.cached.append(node_id)
                context.on_event(events.NodeCached(node_id, spec.id))
            else:
                context.on_event(events.NodeStarted(node_id, spec.id, index, len(plan.order)))
                arguments = dict(literals)
                for name, link in links.items():
                    arguments[name] = values[link.src][link.src_output]
                node_started = time.perf_counter()
                node_context = context.for_node(node_id, provenance if spec.output_node else None)
                outputs = self._call(node_id, spec, arguments, node_context)
                self.cache.put(signatures[node_id], outputs)
                result.executed.append(node_id)
                result.node_seconds[node_id] = time.perf_counter() - node_started
                context.on_event(events.NodeFinished(node_id, spec.id, result.node_seconds[node_id]))
            values[node_id] = outputs
            if node_id in plan.output_nodes:
                result.outputs[node_id] = outputs
            for link in links.values():
                remaining_uses[link.src] -= 1
                if remaining_uses[link.src] == 0 and link.src not in plan.output_nodes:
                    values.pop(link.src, None)  # no later node reads it
        result.seconds = time.perf_counter() - started
        context.on_event(events.RunFinished(tuple(result.executed), tuple(result.cached), result.seconds))
        return result

    def clear_cache(self) -> None:
        """Forget every cached output (models included)."""
        self.cache.clear()

    def _signature(self, node_id: str, spec: NodeSpec, literals: dict[str, Any], links: dict,
                   signatures: dict[str, str], run_token: str) -> str:
        fingerprint = None
        if spec.fingerprint is not None:
            try:
                fingerprint = str(spec.fingerprint(dict(literals), self.paths))
            except NodeflowError as error:
                raise NodeError(node_id, spec.id, str(error)) from None
            except OSError as error:
                raise NodeError(node_id, spec.id, f"cannot read its file: {error}") from None
            except Exception as error:  # a bug in the fingerprint function
                logger.exception("fingerprint of node %s (%s) failed", node_id, spec.id)
                raise NodeError(node_id, spec.id, f"{type(error).__name__}: {error}") from error
        if not spec.idempotent:
            fingerprint = f"{fingerprint}:{run_token}"
        upstream = {name: (signatures[link.src], link.src_output) for name, link in links.items()}
        return signature(spec.id, spec.version, literals, fingerprint, upstream)

    def _call(self, node_id: str, spec: NodeSpec, arguments: dict[str, Any],
              context: RunContext) -> tuple:
        if spec.wants_context:
            arguments["ctx"] = context
        try:
            returned = spec.function(**arguments)
        except Cancelled:
            raise
        except NodeflowError as error:
            context.on_event(events.NodeFailed(node_id, spec.id, str(error)))
            raise NodeError(node_id, spec.id, str(error), getattr(error, "input_name", None)) from None
        except OSError as error:  # the machine's answer (no such folder, no permission, disk full): no traceback
            logger.debug("node %s (%s) failed", node_id, spec.id, exc_info=True)
            message = f"{error.strerror or type(error).__name__}: {error.filename or error}"
            context.on_event(events.NodeFailed(node_id, spec.id, message))
            raise NodeError(node_id, spec.id, message) from error
        except Exception as error:
            logger.exception("node %s (%s) failed", node_id, spec.id)
            message = f"{type(error).__name__}: {error}"
            context.on_event(events.NodeFailed(node_id, spec.id, message))
            raise NodeError(node_id, spec.id, message) from error
        try:
            return _as_outputs(node_id, spec, returned)
        except NodeError as error:
            context.on_event(events.NodeFailed(node_id, spec.id, error.message))
            raise


def _literals(spec: NodeSpec, values: dict[str, Any], links: dict) -> dict[str, Any]:
    """The literal values a node is called with: widgets not linked, given or required (an
    optional widget left out takes the function's own default)."""
    return {s.name: values.get(s.name, s.default) for s in spec.inputs
            if s.is_widget and s.name not in links and (s.name in values or not s.optional)}


def _as_outputs(node_id: str, spec: NodeSpec, returned: Any) -> tuple:
    """The one return convention: a tuple with one value per declared output. A node without
    outputs returns None or a report (what it saved), kept in the run's result for callers."""
    if not spec.outputs:
        return () if returned is None else (returned,)
    if not isinstance(returned, tuple) or len(returned) != len(spec.outputs):
        raise NodeError(node_id, spec.id, f"returned {type(returned).__name__}, expected a tuple of "
                        f"{len(spec.outputs)} outputs (a bug in the node)")
    return returned


def _count_uses(plan: graphs.Plan) -> dict[str, int]:
    uses = {node_id: 0 for node_id in plan.order}
    for link in plan.links:
        uses[link.src] += 1
    return uses
