"""``--sweep NODE.INPUT=VALUES`` as a ``SweepSpec``: each value parsed by the input's type and
checked (range, choices, validators) before anything runs.

VALUES is one of:

- a list: ``4,6,8``; spaces around items are dropped, ``\\,`` is a comma inside a value;
- a range, for INT and FLOAT inputs only: ``A..B`` (both ends included, counting up or down by 1),
  ``A..B:STEP`` (``1..20:4`` is 1, 5, 9, 13, 17; the step's sign must lead from A to B, else the
  range is empty and refused); a float range is a range with a decimal point or exponent in any
  part and needs a step: ``0.5..1.0:0.25`` is 0.5, 0.75, 1.0;
- ``@FILE``: one value per line (UTF-8; blank lines skipped, spaces at both ends dropped, commas
  kept): bulk prompts.

A mistake is a ``SweepError``: one line naming the option, the node, the input and the value.
"""

from __future__ import annotations

import builtins
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeflow.errors import NodeflowError

#: At most this many values per sweep, and jobs per sweep run (the manifest is rewritten after each).
MAX_VALUES = 10_000
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
TYPED = ("INT", "FLOAT", "BOOLEAN", "STRING", "CHOICE")  # the widget types: text parses as each
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"\s*({_NUMBER})\s*\.\.\s*({_NUMBER})\s*(?::\s*({_NUMBER})\s*)?")


class SweepError(NodeflowError):
    """A sweep the user can fix (a bad value, an unknown node or input, an empty range, a
    manifest of another sweep): one line, exit status 2, found before any work."""


@dataclass(frozen=True)
class Sweep:
    """One ``--sweep``: the values one literal input takes, parsed and checked."""

    node_id: str
    input_name: str
    values: tuple[Any, ...]
    text: str = field(default="", compare=False)  # the option as given, for messages
    node_type: str = field(default="", compare=False)
    node_title: str | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """``NODE.INPUT``, as jobs and manifests name the input."""
        return f"{self.node_id}.{self.input_name}"

    @property
    def label(self) -> str:
        """How grids name the axis: ``seed (KSampler 3)``, or with the node's title."""
        return f"{self.input_name} ({self.node_title or self.node_type} {self.node_id})"

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node_id, "input": self.input_name, "values": list(self.values)}


@dataclass(frozen=True)
class SweepSpec:
    """What to run: sweeps (a cartesian product, or paired with ``zip``), each ``repeat`` times."""

    sweeps: tuple[Sweep, ...] = ()
    zip: bool = False
    repeat: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"sweeps": [s.to_dict() for s in self.sweeps], "zip": self.zip, "repeat": self.repeat}


def parse_spec(texts: list[str], workflow, registry, paths=None, *, zip: bool = False,
               repeat: int = 1, names: list[str] | None = None) -> SweepSpec:
    """The ``--sweep`` options (``NODE.INPUT=VALUES`` each), ``--zip`` and ``--repeat`` as a
    checked ``SweepSpec``; raises ``SweepError``. ``paths`` lets choices computed from the model
    folders (checkpoint names) be checked too. ``names``: what the messages call each option
    (default ``--sweep 'TEXT'``; the editor names its axes)."""
    names = names or [f"--sweep {text!r}" for text in texts]
    if len(names) != len(texts):
        raise ValueError(f"{len(names)} names for {len(texts)} sweeps")  # a caller's mistake, not the user's
    sweeps = [parse_sweep(text, workflow, registry, paths, where=name) for text, name in builtins.zip(texts, names)]
    seen: dict[str, str] = {}
    for sweep, name in builtins.zip(sweeps, names):  # ``zip`` is the option here
        if sweep.key in seen:
            raise SweepError(f"{name}: {sweep.key} is swept twice (also by {seen[sweep.key]})")
        seen[sweep.key] = name
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_VALUES:
        raise SweepError(f"--repeat {repeat!r}: expected a whole number from 1 to {MAX_VALUES}")
    if zip:
        if len(sweeps) < 2:
            raise SweepError("--zip pairs two or more --sweep options; got "
                             f"{len(sweeps)}")
        lengths = {len(s.values) for s in sweeps}
        if len(lengths) > 1:
            counts = ", ".join(f"{s.key} has {len(s.values)}" for s in sweeps)
            raise SweepError(f"--zip needs sweeps of equal length: {counts}")
    return SweepSpec(tuple(sweeps), zip, repeat)


def parse_sweep(text: str, workflow, registry, paths=None, where: str | None = None) -> Sweep:
    """One ``NODE.INPUT=VALUES`` option as a ``Sweep`` (see the module docstring for VALUES);
    ``where`` starts each error message (default ``--sweep 'TEXT'``)."""
    where = where or f"--sweep {text!r}"
    target, sep, raw = text.partition("=")
    node_id, dot, input_name = target.strip().partition(".")
    if not sep or not dot or not node_id or not input_name:
        raise SweepError(f"{where}: expected NODE.INPUT=VALUES")
    if node_id not in workflow.nodes:
        raise SweepError(f"{where}: no node {node_id!r} in the workflow")
    node = workflow.nodes[node_id]
    if node.type not in registry:
        raise SweepError(f"{where}: node {node_id} has an unknown type {node.type!r}")
    spec = registry.get(node.type)
    input_spec = spec.input(input_name)
    node_name = f"node {node_id} ({node.type})"
    if input_spec is None:
        known = ", ".join(s.name for s in spec.widget_inputs)
        raise SweepError(f"{where}: {node_name} has no input {input_name!r}; its values: {known or 'none'}")
    if not input_spec.is_widget:
        raise SweepError(f"{where}: {node_name}, input {input_name!r} takes a link, not a value")
    link = workflow.input_link(node_id, input_name)
    if link is not None:
        raise SweepError(f"{where}: {node_name}, input {input_name!r} is linked from node {link.src}; "
                         f"sweep that node's value instead")
    try:
        raw.encode("utf-8")  # bytes that are not UTF-8 reach Python as lone surrogates
        values = parse_values(raw, input_spec.type)
    except UnicodeEncodeError:
        raise SweepError(f"{where}: the values are not UTF-8 text") from None
    except ValueError as error:
        raise SweepError(f"{where}: {node_name}, input {input_name!r}: {error}") from None
    for value in values:
        problem = input_spec.check_value(value, paths)
        if problem:
            shown = repr(value) if isinstance(value, str) else str(value)
            if shown not in problem and str(value) not in problem:
                problem = f"value {shown}: {problem}"
            raise SweepError(f"{where}: {node_name}, input {input_name!r}: {problem}")
    return Sweep(node_id, input_name, tuple(values), text, node.type, node.title)


def parse_values(raw: str, socket_type: str) -> list[Any]:
    """VALUES (a list, a range or ``@FILE``) as values of ``socket_type``; ValueError names the
    first bad one. Never empty."""
    if raw.startswith("@"):
        items = _file_lines(raw[1:])
        if not items:
            raise ValueError(f"{raw[1:]!r} holds no values (one per line)")
    elif socket_type in ("INT", "FLOAT") and (match := _RANGE.fullmatch(raw)):
        return _range(raw, *match.groups(), socket_type)
    else:
        if not raw.strip():
            raise ValueError("no values given")
        items = [item.strip() for item in split_list(raw)]
        empty = [i for i, item in enumerate(items) if not item]
        if empty and socket_type != "STRING":
            raise ValueError(f"value {empty[0] + 1} of {raw!r} is empty")
    if len(items) > MAX_VALUES:
        raise ValueError(f"{len(items)} values; at most {MAX_VALUES} per sweep")
    return [parse_typed(item, socket_type) for item in items]


def split_list(raw: str) -> list[str]:
    """``a,b,c`` split at commas; ``\\,`` is a comma inside a value (other backslashes stay:
    prompts use ``\\(``)."""
    items, current, index = [], [], 0
    while index < len(raw):
        char = raw[index]
        if char == "\\" and raw[index + 1:index + 2] == ",":
            current.append(",")
            index += 2
            continue
        if char == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    items.append("".join(current))
    return items


def _file_lines(name: str) -> list[str]:
    if not name:
        raise ValueError("'@' must be followed by a file name")
    path = Path(name).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{name}: not UTF-8 text") from None
    except OSError as error:
        raise ValueError(f"{name}: cannot read the file ({error.strerror or type(error).__name__})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _range(raw: str, start_text: str, stop_text: str, step_text: str | None, socket_type: str) -> list[Any]:
    """``A..B[:STEP]`` as values (see the module docstring)."""
    is_float = any(part is not None and re.search(r"[.eE]", part) for part in (start_text, stop_text, step_text))
    number = float if is_float else int
    start, stop = number(start_text), number(stop_text)
    if step_text is None:
        if is_float:
            raise ValueError(f"the float range {raw.strip()!r} needs a step: A..B:STEP, e.g. 0.5..1.0:0.25")
        step = 1 if stop >= start else -1
    else:
        step = number(step_text)
    if not all(math.isfinite(v) for v in (start, stop, step)):
        raise ValueError(f"the range {raw.strip()!r} has a bound that is not a finite number")
    if step == 0:
        raise ValueError(f"the range {raw.strip()!r} has a step of 0")
    if (stop - start) * step < 0:
        raise ValueError(f"the range {raw.strip()!r} is empty (a step of {step_text} never goes from "
                         f"{start_text} to {stop_text})")
    count = (stop - start) // step + 1 if not is_float else math.floor((stop - start) / step + 1e-9) + 1
    if count > MAX_VALUES:
        raise ValueError(f"the range {raw.strip()!r} has {count} values; at most {MAX_VALUES} per sweep")
    if not is_float:
        values: list[Any] = [start + i * step for i in range(count)]
        return [float(v) for v in values] if socket_type == "FLOAT" else values
    digits = max(_decimals(part) for part in (start_text, stop_text, step_text) if part is not None)
    values = [round(start + i * step, digits) for i in range(count)]  # 0.75, not 0.7500000000000001
    if socket_type == "INT":
        fractional = next((v for v in values if not float(v).is_integer()), None)
        if fractional is not None:
            raise ValueError(f"{fractional} is not an integer (the range {raw.strip()!r})")
        return [int(v) for v in values]
    return values


def _decimals(text: str) -> int:
    """Digits after the point that ``text`` writes (more for an exponent): how far to round."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return max(0, decimals - int(exponent or 0)) + 6


def parse_typed(raw: str, socket_type: str) -> Any:
    """Text from the command line as a value of ``socket_type`` (one of ``TYPED``); ValueError
    when it is not one. ``--set`` parses its values with this too (``nodeflow.cli.parse_value``)."""
    if socket_type == "INT":
        try:
            return int(raw) if raw.strip().lstrip("+-").isdigit() else int(raw, 0)  # 42, 0x2a
        except ValueError:
            raise ValueError(f"{raw!r} is not an integer") from None
    if socket_type == "FLOAT":
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    if socket_type == "BOOLEAN":
        if raw.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"{raw!r} is not true or false")
        return raw.lower() in TRUE_WORDS
    if socket_type in ("STRING", "CHOICE"):
        return raw
    raise ValueError(f"a {socket_type} input takes no typed value")
