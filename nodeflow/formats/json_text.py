"""JSON that users hand us (workflow files, PNG chunks), read within bounds.

A workflow file is at most ``MAX_BYTES`` long and nests at most ``MAX_DEPTH`` levels (real ones
nest under 10); integers have at most ``MAX_INT_DIGITS`` digits (a seed has 20); an object may not
name a key twice (JSON readers differ on which one wins); text is Unicode (an escaped lone
surrogate such as ``"\\ud800"`` is no character, and could be written to no file or PNG). Anything
else is a ``WorkflowFormatError`` naming the source, never a RecursionError or a memory blow-up.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nodeflow.errors import WorkflowFormatError

MAX_BYTES = 64 * 2**20
MAX_DEPTH = 100
MAX_INT_DIGITS = 40
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class NotJson(WorkflowFormatError):
    """The text is not JSON at all (as opposed to JSON beyond the bounds)."""


class _Refused(ValueError):
    """A bound broken while parsing (raised from json's hooks)."""


def parse_json(text: str, source: str) -> Any:
    """``text`` parsed, within the bounds above; ``source`` names it in errors ("{source} is not
    valid JSON ...")."""
    try:
        data = json.loads(text, parse_int=_bounded_int, object_pairs_hook=_unique_keys)
    except _Refused as error:
        raise WorkflowFormatError(f"{source} {error}") from None
    except RecursionError:
        raise WorkflowFormatError(f"{source} nests more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as error:
        raise NotJson(f"{source} is not valid JSON: {error.msg} at line {error.lineno} "
                                  f"column {error.colno}") from None
    if _depth_exceeds(data, MAX_DEPTH):
        raise WorkflowFormatError(f"{source} nests more than {MAX_DEPTH} levels deep")
    if _SURROGATE_ESCAPE.search(text):  # pairs make one character; a lone half stays a surrogate
        lone = _lone_surrogate(data)
        if lone is not None:
            raise WorkflowFormatError(f"{source} holds the escape {lone}: half of a surrogate pair, "
                                      "alone, is not a character")
    return data


def read_json_file(path: Path) -> Any:
    """A JSON file parsed with ``parse_json``; refused unread when over ``MAX_BYTES``."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise WorkflowFormatError(f"{path}: {size / 2**20:.0f} MiB is too large for a workflow "
                                  f"(at most {MAX_BYTES // 2**20} MiB)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise WorkflowFormatError(f"{path} is not valid JSON (not UTF-8 text: {error})") from None
    return parse_json(text, str(path))


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"has a number with {len(digits.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(digits)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _Refused(f"names the key {duplicate!r} twice in one object")
    return result


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether lists and objects in ``data`` nest deeper than ``limit`` (an explicit stack)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth > limit:
                return True
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return False


def _lone_surrogate(data: Any) -> str | None:
    """The first lone surrogate in the text of ``data`` (keys included), as its JSON escape."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                return f"\\u{ord(found.group()):04x}"
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None
