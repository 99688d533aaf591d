"""Constant nodes (ComfyUI's PrimitiveInt, PrimitiveFloat, PrimitiveString(Multiline),
PrimitiveBoolean): one widget, passed on unchanged, so one value can feed several inputs.

They are real nodes with an output, unlike ComfyUI's frontend-only PrimitiveNode (which the
workflow import turns into literals of its targets: nodeflow.formats.comfy).
"""

from __future__ import annotations

import sys

from nodeflow.spec import BOOLEAN, FLOAT, INT, STRING, Boolean, Float, Int, Output, String, node

# ComfyUI's bounds for PrimitiveInt and PrimitiveFloat: +-sys.maxsize (2**63 - 1 on 64-bit machines)
LIMIT = sys.maxsize


@node("PrimitiveInt", display="Int", category="utils/primitive",
      inputs=[Int("value", 0, min=-LIMIT, max=LIMIT)], outputs=[Output(INT)])
def primitive_int(value: int):
    """An integer, for any number of INT inputs."""
    return (value,)


@node("PrimitiveFloat", display="Float", category="utils/primitive",
      inputs=[Float("value", 0.0, min=-LIMIT, max=LIMIT, step=0.1)], outputs=[Output(FLOAT)])
def primitive_float(value: float):
    """A number, for any number of FLOAT inputs."""
    return (float(value),)


@node("PrimitiveString", display="String", category="utils/primitive",
      inputs=[String("value", "")], outputs=[Output(STRING)])
def primitive_string(value: str):
    """A line of text, for any number of STRING inputs."""
    return (value,)


@node("PrimitiveStringMultiline", display="String (Multiline)", category="utils/primitive",
      inputs=[String("value", "", multiline=True)], outputs=[Output(STRING)])
def primitive_string_multiline(value: str):
    """Text of several lines (a prompt), for any number of STRING inputs."""
    return (value,)


@node("PrimitiveBoolean", display="Boolean", category="utils/primitive",
      inputs=[Boolean("value", False)], outputs=[Output(BOOLEAN)])
def primitive_boolean(value: bool):
    """True or false, for any number of BOOLEAN inputs."""
    return (value,)
