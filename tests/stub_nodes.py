"""A tiny node pack for foundation tests: plain numbers and a call counter per node type."""

from __future__ import annotations

from collections import Counter

from nodeflow.errors import NodeInputError
from nodeflow.spec import FLOAT, INT, Boolean, Float, Input, Int, Output, String, node

CALLS: Counter = Counter()  # test-only: how often each stub ran (reset by the fixture)


@node("Number", category="test", inputs=[Int("value", 1, min=0, max=100)], outputs=[Output(INT)])
def number(value: int):
    """A constant."""
    CALLS["Number"] += 1
    return (value,)


@node("Add", category="test", inputs=[Input("a", INT), Input("b", INT)], outputs=[Output(INT)])
def add(a: int, b: int):
    """a + b."""
    CALLS["Add"] += 1
    return (a + b,)


@node("Scale", category="test", inputs=[Input("x", INT), Float("factor", 2.0, min=-10, max=10)],
      outputs=[Output(FLOAT, "scaled")])
def scale(x: int, factor: float):
    """x * factor."""
    CALLS["Scale"] += 1
    return (x * factor,)


@node("Fail", category="test", inputs=[Input("x", INT)], outputs=[Output(INT)])
def fail(x: int):
    """Always refuses its input."""
    raise NodeInputError("x", f"{x} is not acceptable")


@node("Crash", category="test", inputs=[Input("x", INT)], outputs=[Output(INT)])
def crash(x: int):
    """A bug."""
    return (1 // 0,)


@node("Random", category="test", inputs=[Input("x", INT)], outputs=[Output(INT)], idempotent=False)
def random_number(x: int):
    """Never cached."""
    CALLS["Random"] += 1
    return (x + CALLS["Random"],)


@node("Sink", category="test", output_node=True,
      inputs=[Input("value", "*"), String("label", "out"), Boolean("flag", False, optional=True)])
def sink(value, label: str, flag: bool = False, ctx=None):
    """Records what reaches it."""
    CALLS["Sink"] += 1
    ctx.progress(1, 1)
    return {"value": value, "label": label}
