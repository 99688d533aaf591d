"""A tiny node pack for foundation tests: plain numbers and a call counter per node type."""

from __future__ import annotations

import weakref
from collections import Counter

from nodeflow.errors import NodeInputError
from nodeflow.spec import FLOAT, INT, Boolean, Float, Input, Int, Output, String, node

CALLS: Counter = Counter()  # test-only: how often each stub ran (reset by the fixture)
MADE: list = []  # test-only: weak references to the tensors Zeros made


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


def _file_fingerprint(inputs: dict, paths) -> str:
    return open(inputs["path"], encoding="utf-8").read()


@node("ReadNumber", category="test", inputs=[String("path", "")], outputs=[Output(INT)],
      fingerprint=_file_fingerprint)
def read_number(path: str):
    """An integer read from a text file; the file's content joins the signature."""
    CALLS["ReadNumber"] += 1
    with open(path, encoding="utf-8") as file:
        return (int(file.read()),)


@node("Zeros", category="test", inputs=[Int("count", 10, min=0, max=10**7)], outputs=[Output("TENSOR")])
def zeros(count: int):
    """A float32 tensor of ``count`` zeros (4 * count bytes)."""
    import torch

    CALLS["Zeros"] += 1
    tensor = torch.zeros(count)
    MADE.append(weakref.ref(tensor))
    return (tensor,)


@node("TensorSum", category="test", inputs=[Input("tensor", "TENSOR")], outputs=[Output(INT)])
def tensor_sum(tensor):
    """The sum of a tensor, as an int."""
    return (int(tensor.sum()),)


@node("Steps", category="test", inputs=[Input("x", INT), Int("steps", 5, min=1, max=1000)],
      outputs=[Output(INT)])
def steps(x: int, steps: int, ctx):
    """Reports progress each step; stops when cancelled."""
    for step in range(1, steps + 1):
        CALLS["Steps"] += 1
        ctx.progress(step, steps)
    return (x,)
