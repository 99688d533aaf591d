"""Bounded text operations behind the String*/Regex* nodes and PreviewAny (nodes/strings.py).

Regular expressions come from workflows, i.e. from anyone: Python's ``re`` can backtrack for
longer than the age of the universe (``(a|aa)+$`` on a long run of ``a`` followed by ``!``) and
has no timeout. So a pattern is

1. at most ``MAX_PATTERN_CHARS`` long and parsed by ``re``'s own parser: the syntax, and the
   semantics, are Python's ``re`` (what ComfyUI uses), and a bad pattern is a ``TextOpError``
   with ``re``'s message;
2. refused when its fixed repetitions multiply out past ``MAX_PATTERN_SIZE`` (``(?:a{1000}){1000}``:
   the ``regex`` module unrolls them when it compiles, in time and memory);
3. compiled and run by the third-party ``regex`` module (a nodeflow dependency already, for the
   CLIP tokenizer) in its ``re``-compatible VERSION0 mode, with ``REGEX_SECONDS`` of matching per
   operation (a slower one is refused: ``TextOpError``; ``regex`` checks its clock every so
   often, so a refusal may come a little after the limit).

Texts given to a pattern are at most ``MAX_TEXT_CHARS`` long, and every result built here
(replacements, joined matches) at most ``MAX_RESULT_CHARS``: a replacement may multiply a text
(``"" -> "xxxx..."`` at every position), and a look-ahead group may capture the rest of the text at
every position.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_PATTERN_CHARS = 2_000
MAX_PATTERN_SIZE = 100_000  # the pattern with its fixed repetitions unrolled (items)
MAX_TEXT_CHARS = 1_000_000
MAX_RESULT_CHARS = 10_000_000
REGEX_SECONDS = 0.5
MAX_PREVIEW_CHARS = 100_000


class TextOpError(ValueError):
    """A pattern, text or result out of bounds, or a bad pattern; ``str()`` is one line and
    ``about`` says what it is about: "pattern", "text", "replacement" or "result"."""

    def __init__(self, message: str, about: str = "pattern") -> None:
        super().__init__(message)
        self.about = about


def regex_flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    """``re``'s flag bits, as ComfyUI's regex nodes set them (``regex`` uses the same values)."""
    return ((re.IGNORECASE if case_insensitive else 0) | (re.MULTILINE if multiline else 0)
            | (re.DOTALL if dotall else 0))


def check_pattern(pattern: str) -> None:
    """Raise ``TextOpError`` (a ValueError: usable as an input validator) for a pattern that
    would be refused whatever the flags."""
    _compile(pattern, 0)


def check_text(text: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise TextOpError(f"{len(text)} characters is more than a regular expression is run on "
                          f"({MAX_TEXT_CHARS})", "text")


def regex_search(pattern: str, text: str, flags: int = 0):
    """The first match of ``pattern`` in ``text`` (a ``regex`` Match, like ``re``'s), or None."""
    compiled = _compile(pattern, flags).regex
    check_text(text)
    return _timed(compiled.search, text)


def regex_finditer(pattern: str, text: str, flags: int = 0) -> Iterator[Any]:
    """The matches ``re.finditer`` finds (empty ones included, as Python 3.7+ places them),
    within ``REGEX_SECONDS`` for the whole iteration (``regex`` counts the time since the
    iteration began, checked while it matches: the caller's time between matches counts too)."""
    compiled = _compile(pattern, flags).regex
    check_text(text)
    matches = compiled.finditer(text, timeout=REGEX_SECONDS)
    while True:
        try:
            match = next(matches)
        except StopIteration:
            return
        except TimeoutError:
            raise _too_slow() from None
        yield match


def group_count(pattern: str, flags: int = 0) -> int:
    """How many capture groups ``pattern`` has."""
    return _compile(pattern, flags).regex.groups


def regex_findall(pattern: str, text: str, flags: int = 0) -> list | None:
    """``re.findall``'s list when its size is bounded by the text's (no group inside a
    look-around, so every group lies within its match), else None."""
    compiled = _compile(pattern, flags)
    check_text(text)
    return _timed(compiled.regex.findall, text) if compiled.groups_in_match else None


def regex_replace(pattern: str, replacement: str, text: str, flags: int = 0, count: int = 0) -> str:
    """``re.sub(pattern, replacement, text, count=count, flags=flags)``, bounded; ``replacement``
    is a template (``\\1``, ``\\g<name>``) checked by ``re`` first."""
    compiled = _compile(pattern, flags)
    check_text(text)
    try:
        re.compile(pattern, flags).sub(replacement, "")  # re's own check of the template
    except (re.error, IndexError) as error:  # IndexError: an unknown group name
        raise TextOpError(f"not a valid replacement: {error}", "replacement") from None
    references = replacement.count("\\")  # at most this many groups are inserted per match
    if compiled.groups_in_match:  # a first pass in C: how many matches, how much they cover
        rest, found = _timed(compiled.regex.subn, "", text, count=count)
        bound = len(rest) + found * len(replacement) + references * (len(text) - len(rest))
        if bound <= MAX_RESULT_CHARS:
            return _timed(compiled.regex.sub, replacement, text, count=count)
        if not references:  # the bound is the length
            raise _too_long()
    pieces: list[str] = []
    size, last = 0, 0
    for number, match in enumerate(regex_finditer(pattern, text, flags)):
        if count and number >= count:
            break
        if references:
            widest = max((match.end(g) - match.start(g) for g in range(match.re.groups + 1)
                          if match.start(g) >= 0), default=0)
            if size + (match.start() - last) + len(replacement) * (widest + 1) > MAX_RESULT_CHARS:
                raise _too_long()
            expanded = match.expand(replacement)
        else:
            expanded = replacement
        pieces += [text[last:match.start()], expanded]
        size += match.start() - last + len(expanded)
        last = match.end()
        if size > MAX_RESULT_CHARS:
            raise _too_long()
    pieces.append(text[last:])
    if size + len(text) - last > MAX_RESULT_CHARS:
        raise _too_long()
    return "".join(pieces)


def replace_text(text: str, find: str, replacement: str) -> str:
    """``text.replace(find, replacement)``, refused when the result would be too long."""
    found = text.count(find)
    if len(text) + found * (len(replacement) - len(find)) > MAX_RESULT_CHARS:
        raise _too_long()
    return text.replace(find, replacement)


def join_bounded(parts: list[str], delimiter: str = "\n") -> str:
    size = sum(map(len, parts)) + len(delimiter) * max(len(parts) - 1, 0)
    if size > MAX_RESULT_CHARS:
        raise _too_long()
    return delimiter.join(parts)


def bounded_matches(pattern: str, text: str, flags: int, pick) -> list[str]:
    """``pick(match)`` (a string, or None to skip) for every match, the total bounded."""
    found, size = [], 0
    for match in regex_finditer(pattern, text, flags):
        value = pick(match)
        if value is None:
            continue
        size += len(value) + 1
        if size > MAX_RESULT_CHARS:
            raise _too_long()
        found.append(value)
    return found


def preview_text(value: Any) -> str:
    """A value as PreviewAny shows it (as ComfyUI's): text as it is, numbers and booleans by
    ``str``, None as ``None``, else JSON (indent 4) where it is JSON data, else ``str`` (tensors
    with 6 items at each edge); cut at ``MAX_PREVIEW_CHARS``."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (int, float, bool)):
        text = str(value)
    elif value is None:
        text = "None"
    else:
        try:
            text = json.dumps(value, indent=4)
        except (TypeError, ValueError, RecursionError):
            text = _str_with_tensor_edges(value)
    if len(text) > MAX_PREVIEW_CHARS:
        text = text[:MAX_PREVIEW_CHARS] + f"\n... ({len(text) - MAX_PREVIEW_CHARS} more characters)"
    return text


def _str_with_tensor_edges(value: Any) -> str:
    try:
        from torch._tensor_str import PRINT_OPTS
    except ImportError:  # pragma: no cover - torch is a dependency
        PRINT_OPTS = None
    before = PRINT_OPTS.edgeitems if PRINT_OPTS is not None else None
    try:
        if PRINT_OPTS is not None:
            PRINT_OPTS.edgeitems = 6
        return str(value)
    except Exception:
        return "source exists, but could not be serialized."
    finally:
        if PRINT_OPTS is not None:
            PRINT_OPTS.edgeitems = before


def _timed(operation, *args, **kwargs):
    """``operation(*args, timeout=REGEX_SECONDS, **kwargs)``; a timeout is a TextOpError."""
    try:
        return operation(*args, timeout=REGEX_SECONDS, **kwargs)
    except TimeoutError:
        raise _too_slow() from None


def _too_slow() -> TextOpError:
    return TextOpError(f"matching took longer than {REGEX_SECONDS:g} s (a pattern that backtracks "
                       "without end, such as (a|aa)+$, or too long a text)")


def _too_long() -> TextOpError:
    return TextOpError(f"the result would be longer than {MAX_RESULT_CHARS} characters", "result")


@dataclass(frozen=True)
class _Pattern:
    regex: Any  # the compiled regex.Pattern
    groups_in_match: bool  # no capture group inside a look-around: every group lies within its match


@functools.lru_cache(maxsize=256)
def _compile(pattern: str, flags: int) -> _Pattern:
    """The ``regex`` pattern for ``pattern`` once ``re`` accepts it and it is within bounds."""
    import regex

    if len(pattern) > MAX_PATTERN_CHARS:
        raise TextOpError(f"the pattern has {len(pattern)} characters, more than {MAX_PATTERN_CHARS}")
    try:
        parsed = _re_parser().parse(pattern, flags)
    except re.error as error:
        raise TextOpError(f"not a valid regular expression: {error}") from None
    except RecursionError:
        raise TextOpError("the pattern nests groups too deeply") from None
    if _unrolled_size(parsed) > MAX_PATTERN_SIZE:
        raise TextOpError(f"the pattern's repetitions multiply out past {MAX_PATTERN_SIZE} items "
                          "(such as (?:a{1000}){1000})")
    try:
        compiled = regex.compile(pattern, flags | regex.VERSION0)
    except (regex.error, RecursionError) as error:  # re accepted it: not expected
        raise TextOpError(f"not a valid regular expression: {error}") from None
    return _Pattern(compiled, not _groups_in_lookarounds(parsed))


def _re_parser():
    try:
        from re import _parser  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse as _parser
    return _parser


def _groups_in_lookarounds(parsed) -> bool:
    """Whether a capture group lies inside a look-ahead or look-behind (it may capture text
    outside its match, up to the whole rest of the text at every position)."""
    try:
        from re._constants import ASSERT, ASSERT_NOT, SUBPATTERN  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        from sre_constants import ASSERT, ASSERT_NOT, SUBPATTERN
    parser = _re_parser()

    def walk(node, inside: bool) -> bool:
        if isinstance(node, parser.SubPattern):
            for op, av in node.data:
                if inside and op is SUBPATTERN and av[0] is not None:
                    return True
                if walk(av, inside or op in (ASSERT, ASSERT_NOT)):
                    return True
            return False
        if isinstance(node, (tuple, list)):
            return any(walk(item, inside) for item in node)
        return False

    return walk(parsed, False)


def _unrolled_size(subpattern) -> int:
    """Items in the pattern with each repetition counted ``max(min, 1)`` times over (what the
    ``regex`` module may unroll); stops counting past the limit."""
    try:
        from re._constants import MAX_REPEAT, MIN_REPEAT  # Python 3.11+
        from re._constants import POSSESSIVE_REPEAT
        repeats = {MAX_REPEAT, MIN_REPEAT, POSSESSIVE_REPEAT}
    except ImportError:  # pragma: no cover - Python 3.10
        from sre_constants import MAX_REPEAT, MIN_REPEAT
        repeats = {MAX_REPEAT, MIN_REPEAT}
    parser = _re_parser()

    def size(node) -> int:
        if isinstance(node, parser.SubPattern):
            total = 0
            for op, av in node.data:
                if op in repeats:
                    low, _high, inner = av
                    total += max(int(low), 1) * size(inner)
                else:
                    total += 1 + size(av)
                if total > MAX_PATTERN_SIZE:
                    return total
            return total
        if isinstance(node, (tuple, list)):
            total = 0
            for item in node:
                total += size(item)
                if total > MAX_PATTERN_SIZE:
                    return total
            return total
        return 0

    return size(subpattern)
