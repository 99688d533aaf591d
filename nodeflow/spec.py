"""How a node type is declared: one decorator over a plain, typed function.

```python
@node("EmptyLatentImage", display="Empty Latent Image", category="latent",
      inputs=[Int("width", 512, min=16, max=16384, step=8), ...], outputs=[Output(LATENT)])
def empty_latent_image(width: int, ...):
    '''Zero latents at 1/8 of the pixel size.'''
    return ({"samples": ...},)
```

The decorator only records a ``NodeSpec`` on the function (``fn.__nodeflow_spec__``); the
registry collects decorated functions from node packs. The declaration is checked against the
function's signature when it is made, so a mismatch fails at import, naming the node.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodeflow.errors import NodeDeclarationError

# The socket types, re-exported for node packs (what each one carries: nodeflow.types).
from nodeflow.types import (ANY, BOOLEAN, CHOICE, CLIP, CONDITIONING, CONTROL_NET, FLOAT, GUIDER,  # noqa: F401
                            IMAGE, INT, LATENT, MASK, MODEL, NOISE, SAMPLER, SIGMAS, SOCKET_TYPES, STRING, VAE,
                            WIDGET_TYPES)

SEED_MAX = 2**64 - 1
Validator = Callable[..., None]  # (value) or (value, paths); raises ValueError with the problem
ChoiceSource = Sequence[str] | Callable[[Any], list[str]]


@dataclass(frozen=True)
class InputSpec:
    """One input of a node: a socket (linked) or a widget (literal value, may also be linked)."""

    name: str
    type: str
    default: Any = None
    optional: bool = False
    tooltip: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    multiline: bool = False
    seed: bool = False
    options: ChoiceSource | None = None
    validate: Validator | None = None
    link_only: bool = False  # declared with Input(): always linked, even for INT/FLOAT/...

    @property
    def is_widget(self) -> bool:
        """Whether the input takes a literal value (it may still be linked instead)."""
        return self.type in WIDGET_TYPES and not self.link_only

    def choices(self, paths: Any = None) -> list[str]:
        """The allowed values of a choice input (computed ones need ``paths``)."""
        if self.options is None:
            return []
        if callable(self.options):
            return list(self.options(paths)) if paths is not None else []
        return list(self.options)

    @property
    def has_computed_choices(self) -> bool:
        return callable(self.options)

    def check_value(self, value: Any, paths: Any = None) -> str | None:
        """A user-facing problem with a literal ``value``, or None when it is acceptable."""
        problem = _type_problem(self, value)
        if problem is None and self.type in (INT, FLOAT):
            if self.min is not None and value < self.min:
                problem = f"{value} is below the minimum {_number(self.min)}"
            elif self.max is not None and value > self.max:
                problem = f"{value} is above the maximum {_number(self.max)}"
        if problem is None and self.type == CHOICE and (paths is not None or not self.has_computed_choices):
            allowed = self.choices(paths)
            if value not in allowed:
                limit = 8 if self.has_computed_choices else len(allowed)  # file lists can be long
                shown = ", ".join(map(repr, allowed[:limit]))
                if len(allowed) > limit:
                    shown += f" ... ({len(allowed)} in all)"
                problem = f"{value!r} is not one of: {shown or '(none available)'}"
        if problem is None and self.validate is not None:
            try:
                if _takes_paths(self.validate):
                    self.validate(value, paths)
                else:
                    self.validate(value)
            except ValueError as error:
                problem = str(error)
        return problem


def _number(bound: float) -> str:
    """A range bound as written: integers in full (a seed's 18446744073709551615, not 1.84467e+19)."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


@functools.lru_cache(maxsize=None)
def _takes_paths(validator: Validator) -> bool:
    """A validator may take ``(value, paths)`` to check against the folders (None when unknown)."""
    return len(inspect.signature(validator).parameters) >= 2


def _type_problem(spec: InputSpec, value: Any) -> str | None:
    expected = {INT: int, FLOAT: (int, float), STRING: str, BOOLEAN: bool, CHOICE: str}.get(spec.type)
    if expected is None:
        return None
    if isinstance(value, bool) and spec.type in (INT, FLOAT):
        return f"expected a number, got {value!r}"
    if not isinstance(value, expected):
        return f"expected {spec.type.lower()}, got {type(value).__name__} {value!r}"
    if spec.type == FLOAT and not math.isfinite(value):  # JSON readers accept NaN and Infinity
        return f"expected a finite number, got {value!r}"
    if spec.type == STRING and "\0" in value:
        return "a NUL character is not allowed in text"
    return None


def Input(name: str, socket_type: str, *, optional: bool = False, tooltip: str = "",
          validate: Validator | None = None) -> InputSpec:
    """A linked input carrying ``socket_type`` (MODEL, IMAGE, ...)."""
    return InputSpec(name, socket_type, optional=optional, tooltip=tooltip, validate=validate,
                     link_only=True)


def Int(name: str, default: int, *, min: int | None = None, max: int | None = None, step: int = 1,
        seed: bool = False, optional: bool = False, tooltip: str = "",
        validate: Validator | None = None) -> InputSpec:
    """An integer widget; ``seed=True`` marks a seed (0 .. 2**64-1, "control after run")."""
    if seed:
        min = 0 if min is None else min
        max = SEED_MAX if max is None else max
    return InputSpec(name, INT, default, optional, tooltip, min, max, step, seed=seed, validate=validate)


def Float(name: str, default: float, *, min: float | None = None, max: float | None = None,
          step: float = 0.01, round: float | None = None, optional: bool = False,
          tooltip: str = "", validate: Validator | None = None) -> InputSpec:
    """A floating-point widget. ``round`` is accepted for declarations written after ComfyUI's
    (where it is the frontend's display rounding) and has no effect: values are checked against
    ``min`` and ``max`` only."""
    return InputSpec(name, FLOAT, default, optional, tooltip, min, max, step, validate=validate)


def String(name: str, default: str = "", *, multiline: bool = False, optional: bool = False,
           tooltip: str = "", validate: Validator | None = None) -> InputSpec:
    """A text widget (``multiline`` for prompts)."""
    return InputSpec(name, STRING, default, optional, tooltip, multiline=multiline, validate=validate)


def Boolean(name: str, default: bool, *, optional: bool = False, tooltip: str = "",
            validate: Validator | None = None) -> InputSpec:
    """A checkbox."""
    return InputSpec(name, BOOLEAN, default, optional, tooltip, validate=validate)


def Choice(name: str, options: ChoiceSource, default: str | None = None, *, optional: bool = False,
           tooltip: str = "", validate: Validator | None = None) -> InputSpec:
    """A combo box; ``options`` is a list, or ``callable(paths) -> list`` computed when needed
    (e.g. model files found on disk)."""
    if default is None and not callable(options) and options:
        default = options[0]
    return InputSpec(name, CHOICE, default, optional, tooltip, options=options, validate=validate)


@dataclass(frozen=True)
class ModelFile:
    """The fingerprint of a node that loads a model file: ``fingerprint=ModelFile("loras",
    "lora_name")`` says input ``input_name`` names a file of the models folder ``kind``.

    The cache signature joins the file's size and modification time (of every file, for a
    diffusers folder), so a replaced file is loaded again; the executor also lists these files in
    the run's provenance, which output nodes write into saved images (model name and hash).

    ``more_inputs`` names further inputs holding files of the same kind (DualCLIPLoader's
    ``clip_name2``): each file joins the signature; ``input_names`` lists them all."""

    kind: str
    input_name: str
    more_inputs: tuple[str, ...] = ()

    @property
    def input_names(self) -> tuple[str, ...]:
        return (self.input_name, *self.more_inputs)

    def __call__(self, inputs: dict, paths: Any) -> str:
        return "||".join(self._one(paths, inputs[name]) for name in self.input_names)

    def _one(self, paths: Any, name: str) -> str:
        path = paths.resolve_model(self.kind, name)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


@dataclass(frozen=True)
class Output:
    """One output of a node; ``name`` defaults to the type."""

    type: str
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.type


@dataclass(frozen=True)
class NodeSpec:
    """Everything known about a node type."""

    id: str
    function: Callable[..., Any]
    display: str
    category: str
    description: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[Output, ...]
    output_node: bool = False
    idempotent: bool = True
    fingerprint: Callable[[dict, Any], str] | None = None
    version: int = 1
    wants_context: bool = False
    module: str = field(default="", compare=False)

    def input(self, name: str) -> InputSpec | None:
        return self._inputs_by_name.get(name)

    @functools.cached_property
    def _inputs_by_name(self) -> dict[str, InputSpec]:
        return {spec.name: spec for spec in self.inputs}

    @property
    def widget_inputs(self) -> tuple[InputSpec, ...]:
        return tuple(spec for spec in self.inputs if spec.is_widget)


def node(id: str, *, display: str | None = None, category: str = "misc",
         inputs: Sequence[InputSpec] = (), outputs: Sequence[Output] = (),
         output_node: bool = False, idempotent: bool = True,
         fingerprint: Callable[[dict, Any], str] | None = None, version: int = 1,
         description: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare ``function`` as node type ``id``; see the module docstring."""

    def declare(function: Callable[..., Any]) -> Callable[..., Any]:
        wants_context = _check_signature(id, function, inputs, outputs)
        spec = NodeSpec(
            id=id,
            function=function,
            display=display or id,
            category=category,
            description=description if description is not None else _first_paragraph(function),
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            output_node=output_node,
            idempotent=idempotent,
            fingerprint=fingerprint,
            version=version,
            wants_context=wants_context,
            module=getattr(function, "__module__", ""),
        )
        function.__nodeflow_spec__ = spec
        return function

    return declare


def spec_of(obj: Any) -> NodeSpec | None:
    """The ``NodeSpec`` recorded on a decorated function, if any."""
    spec = getattr(obj, "__nodeflow_spec__", None)
    return spec if isinstance(spec, NodeSpec) else None


def _check_signature(node_id: str, function: Callable[..., Any], inputs: Sequence[InputSpec],
                     outputs: Sequence[Output] = ()) -> bool:
    """Raise if the inputs and the parameters disagree; return whether ``ctx`` is wanted."""
    problems = _declaration_problems(node_id, inputs)
    problems += [f"{output!r} is not an output (use Output(type, name))" for output in outputs
                 if not isinstance(output, Output)]
    inputs = [spec for spec in inputs if isinstance(spec, InputSpec)]
    names = [spec.name for spec in inputs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"inputs declared twice: {', '.join(duplicates)}")
    for spec in inputs:
        if spec.type not in SOCKET_TYPES and not spec.type.isupper():
            problems.append(f"input {spec.name!r} has an unknown type {spec.type!r}")
    parameters = inspect.signature(function).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    missing = [name for name in names if name not in parameters and not accepts_any]
    if missing:
        problems.append(f"declared inputs missing from the function's parameters: {', '.join(missing)}")
    for name, parameter in parameters.items():
        if name == "ctx" or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        if name not in names:
            problems.append(f"parameter {name!r} is not a declared input")
        elif parameter.default is parameter.empty and next(s for s in inputs if s.name == name).optional:
            problems.append(f"optional input {name!r} needs a default in the function")
    if problems:
        where = getattr(function, "__qualname__", repr(function))
        raise NodeDeclarationError(f"node {node_id!r} ({where}): " + "; ".join(problems))
    return "ctx" in parameters


def _declaration_problems(node_id: str, inputs: Sequence[InputSpec]) -> list[str]:
    """Declarations that contradict themselves: a default out of its own range or choices."""
    problems = []
    if not isinstance(node_id, str) or not node_id:
        problems.append("the id must be a non-empty string")
    for spec in inputs:
        if not isinstance(spec, InputSpec):
            problems.append(f"{spec!r} is not an input (use Input, Int, Float, String, ...)")
        elif spec.is_widget and spec.default is not None and not spec.has_computed_choices:
            problem = spec.check_value(spec.default)
            if problem:
                problems.append(f"default of input {spec.name!r}: {problem}")
    return problems


def _first_paragraph(function: Callable[..., Any]) -> str:
    doc = inspect.getdoc(function) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()
