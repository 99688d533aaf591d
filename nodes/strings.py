"""Text nodes (ComfyUI's utils/string: concatenate, substring, length, case, trim, replace,
contains, compare, regular expressions) and PreviewAny (any value shown as text).

The semantics are Python's str methods and ``re``, as ComfyUI's. Regular expressions and
replacements are bounded in size and time (nodeflow.text.string_ops); a bad or refused pattern
is an error naming the input, also found before the run when the pattern is a literal.
"""

from __future__ import annotations

from nodeflow.errors import NodeInputError
from nodeflow.spec import ANY, BOOLEAN, INT, STRING, Boolean, Choice, Input, Int, Output, String, node
from nodeflow.text import string_ops
from nodeflow.text.string_ops import TextOpError

CASE_MODES = ["UPPERCASE", "lowercase", "Capitalize", "Title Case"]
TRIM_MODES = ["Both", "Left", "Right"]
COMPARE_MODES = ["Starts With", "Ends With", "Equal"]
EXTRACT_MODES = ["First Match", "All Matches", "First Group", "All Groups"]


def _text(name: str, tooltip: str = "") -> object:
    return String(name, "", multiline=True, tooltip=tooltip)


def _pattern() -> object:
    return String("regex_pattern", "", multiline=True, validate=string_ops.check_pattern,
                  tooltip=f"A Python regular expression (at most {string_ops.MAX_PATTERN_CHARS} characters, "
                          f"{string_ops.REGEX_SECONDS:g} s of matching)")


def _bounded(inputs: dict[str, str], operation, *args):
    """``operation(*args)``; a refusal becomes an error naming the input it is about
    (``inputs``: TextOpError.about -> input name)."""
    try:
        return operation(*args)
    except TextOpError as error:
        raise NodeInputError(inputs.get(error.about, "string"), str(error)) from None


REGEX_INPUTS = {"pattern": "regex_pattern", "text": "string", "replacement": "replace", "result": "replace"}


@node("StringConcatenate", display="Concatenate", category="utils/string",
      inputs=[_text("string_a"), _text("string_b"), String("delimiter", "")], outputs=[Output(STRING)])
def string_concatenate(string_a: str, string_b: str, delimiter: str):
    """``string_a``, the delimiter, then ``string_b``."""
    return (delimiter.join((string_a, string_b)),)


@node("StringSubstring", display="Substring", category="utils/string",
      inputs=[_text("string"), Int("start", 0), Int("end", 0)], outputs=[Output(STRING)])
def string_substring(string: str, start: int, end: int):
    """The characters from ``start`` up to (not including) ``end``, as Python slices: negative
    positions count from the end."""
    return (string[start:end],)


@node("StringLength", display="Length", category="utils/string",
      inputs=[_text("string")], outputs=[Output(INT, "length")])
def string_length(string: str):
    """The number of characters (Unicode code points)."""
    return (len(string),)


@node("CaseConverter", display="Case Converter", category="utils/string",
      inputs=[_text("string"), Choice("mode", CASE_MODES)], outputs=[Output(STRING)])
def case_converter(string: str, mode: str):
    """UPPERCASE, lowercase, Capitalize (first letter only) or Title Case (each word)."""
    convert = {"UPPERCASE": str.upper, "lowercase": str.lower, "Capitalize": str.capitalize,
               "Title Case": str.title}.get(mode)
    return (convert(string) if convert else string,)


@node("StringTrim", display="Trim", category="utils/string",
      inputs=[_text("string"), Choice("mode", TRIM_MODES)], outputs=[Output(STRING)])
def string_trim(string: str, mode: str):
    """Whitespace removed from both ends, the left or the right."""
    trim = {"Both": str.strip, "Left": str.lstrip, "Right": str.rstrip}.get(mode)
    return (trim(string) if trim else string,)


@node("StringReplace", display="Replace", category="utils/string",
      inputs=[_text("string"), _text("find"), _text("replace")], outputs=[Output(STRING)])
def string_replace(string: str, find: str, replace: str):
    """Every occurrence of ``find`` replaced (an empty ``find`` matches between all characters)."""
    return (_bounded({"result": "replace"}, string_ops.replace_text, string, find, replace),)


@node("StringContains", display="Contains", category="utils/string",
      inputs=[_text("string"), _text("substring"), Boolean("case_sensitive", True)],
      outputs=[Output(BOOLEAN, "contains")])
def string_contains(string: str, substring: str, case_sensitive: bool):
    """Whether ``substring`` occurs in ``string``."""
    if not case_sensitive:
        string, substring = string.lower(), substring.lower()
    return (substring in string,)


@node("StringCompare", display="Compare", category="utils/string",
      inputs=[_text("string_a"), _text("string_b"), Choice("mode", COMPARE_MODES), Boolean("case_sensitive", True)],
      outputs=[Output(BOOLEAN)])
def string_compare(string_a: str, string_b: str, mode: str, case_sensitive: bool):
    """Whether ``string_a`` starts with, ends with or equals ``string_b``."""
    if not case_sensitive:
        string_a, string_b = string_a.lower(), string_b.lower()
    if mode == "Starts With":
        return (string_a.startswith(string_b),)
    if mode == "Ends With":
        return (string_a.endswith(string_b),)
    return (string_a == string_b,)


@node("RegexMatch", display="Regex Match", category="utils/string",
      inputs=[_text("string"), _pattern(), Boolean("case_insensitive", True), Boolean("multiline", False),
              Boolean("dotall", False)],
      outputs=[Output(BOOLEAN, "matches")])
def regex_match(string: str, regex_pattern: str, case_insensitive: bool, multiline: bool, dotall: bool):
    """Whether the pattern matches anywhere in the text (``re.search``)."""
    flags = string_ops.regex_flags(case_insensitive, multiline, dotall)
    return (_bounded(REGEX_INPUTS, string_ops.regex_search, regex_pattern, string, flags) is not None,)


@node("RegexExtract", display="Regex Extract", category="utils/string",
      inputs=[_text("string"), _pattern(), Choice("mode", EXTRACT_MODES), Boolean("case_insensitive", True),
              Boolean("multiline", False), Boolean("dotall", False), Int("group_index", 1, min=0, max=100)],
      outputs=[Output(STRING)])
def regex_extract(string: str, regex_pattern: str, mode: str, case_insensitive: bool, multiline: bool,
                  dotall: bool, group_index: int):
    """The first match, all matches (each one's first group when the pattern has groups), the
    first match's group ``group_index``, or that group of every match; several are joined by
    new lines. Nothing found: empty text."""
    flags = string_ops.regex_flags(case_insensitive, multiline, dotall)

    def extract() -> str:
        if mode == "First Match":
            match = string_ops.regex_search(regex_pattern, string, flags)
            return match.group(0) if match else ""
        if mode == "First Group":
            match = string_ops.regex_search(regex_pattern, string, flags)
            if match and match.re.groups >= group_index:
                return match.group(group_index) or ""
            return ""
        if mode == "All Matches":  # re.findall: the whole match, or the first group's text
            found = string_ops.regex_findall(regex_pattern, string, flags)
            if found is not None:
                return string_ops.join_bounded([m[0] if isinstance(m, tuple) else m for m in found])
            found = string_ops.bounded_matches(regex_pattern, string, flags,
                                               lambda m: m.group(1 if m.re.groups else 0) or "")
            return string_ops.join_bounded(found)
        if mode == "All Groups":  # group_index of every match, when the pattern has that many groups
            groups = string_ops.group_count(regex_pattern, flags)
            if not 0 < groups >= group_index:
                return ""
            found = string_ops.regex_findall(regex_pattern, string, flags) if group_index else None
            if found is not None:
                return string_ops.join_bounded([m[group_index - 1] if groups > 1 else m for m in found])
            found = string_ops.bounded_matches(regex_pattern, string, flags,
                                               lambda m: m.group(group_index) or "")
            return string_ops.join_bounded(found)
        return ""

    return (_bounded({**REGEX_INPUTS, "result": "regex_pattern"}, extract),)


@node("RegexReplace", display="Regex Replace", category="utils/string",
      inputs=[_text("string"), _pattern(),
              _text("replace", "The replacement; \\1 or \\g<name> insert a group"),
              Boolean("case_insensitive", True, optional=True), Boolean("multiline", False, optional=True),
              Boolean("dotall", False, optional=True,
                      tooltip="The dot (.) also matches new lines"),
              Int("count", 0, min=0, max=100, optional=True,
                  tooltip="At most this many replacements; 0 replaces every match")],
      outputs=[Output(STRING)])
def regex_replace(string: str, regex_pattern: str, replace: str, case_insensitive: bool = True,
                  multiline: bool = False, dotall: bool = False, count: int = 0):
    """Find and replace text using regex patterns (``re.sub``)."""
    flags = string_ops.regex_flags(case_insensitive, multiline, dotall)
    return (_bounded(REGEX_INPUTS, string_ops.regex_replace, regex_pattern, replace, string, flags, count),)


@node("PreviewAny", display="Preview as Text", category="utils", output_node=True, idempotent=False,
      inputs=[Input("source", ANY)], outputs=[])
def preview_any(source, ctx):
    """Show any value as text: text as it is, numbers as written, other values as JSON or as
    Python prints them. The command line prints it; the run's result keeps it."""
    from nodeflow.engine import events

    text = string_ops.preview_text(source)
    ctx.on_event(events.TextShown(ctx.node_id, text))
    return {"text": [text]}
