"""Executor overhead with trivial nodes (figures for the README).

    python tests/bench/bench_executor.py

- a 1,000-node chain and a 1,000-node wide graph (1,000 constants into a tree of sums), run
  with an empty cache: microseconds of executor overhead per node (goal < 50 us);
- the same graphs fully cached;
- a fully cached re-run of a 10-node workflow (goal < 1 ms), validation included.

Times are CPU time of this process (``time.process_time``), medians of several runs.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nodeflow.engine.cache import OutputCache  # noqa: E402
from nodeflow.engine.executor import Executor  # noqa: E402
from nodeflow.engine.registry import Registry  # noqa: E402
from nodeflow.spec import INT, Input, Int, Output, node  # noqa: E402
from nodeflow.engine.workflow import Link, NodeInstance, Workflow  # noqa: E402


@node("Const", inputs=[Int("value", 0, min=0)], outputs=[Output(INT)])
def const(value: int):
    return (value,)


@node("Inc", inputs=[Input("x", INT), Int("by", 1)], outputs=[Output(INT)])
def inc(x: int, by: int):
    return (x + by,)


@node("Sum", inputs=[Input("a", INT), Input("b", INT)], outputs=[Output(INT)])
def add(a: int, b: int):
    return (a + b,)


@node("Out", inputs=[Input("x", INT)], outputs=[], output_node=True)
def out(x: int):
    return x


def chain(length: int) -> Workflow:
    nodes = {"0": NodeInstance("0", "Const", {"value": 1})}
    links = []
    for i in range(1, length - 1):
        nodes[str(i)] = NodeInstance(str(i), "Inc", {"by": 1})
        links.append(Link(str(i - 1), 0, str(i), "x"))
    nodes[str(length - 1)] = NodeInstance(str(length - 1), "Out")
    links.append(Link(str(length - 2), 0, str(length - 1), "x"))
    return Workflow(nodes, links)


def wide(leaves: int) -> Workflow:
    """``leaves`` constants summed pairwise in a tree (2 * leaves nodes in all)."""
    nodes, links, layer, next_id = {}, [], [], 0
    for i in range(leaves):
        nodes[str(next_id)] = NodeInstance(str(next_id), "Const", {"value": i})
        layer.append(str(next_id))
        next_id += 1
    while len(layer) > 1:
        merged = []
        for a, b in zip(layer[0::2], layer[1::2]):
            nodes[str(next_id)] = NodeInstance(str(next_id), "Sum")
            links += [Link(a, 0, str(next_id), "a"), Link(b, 0, str(next_id), "b")]
            merged.append(str(next_id))
            next_id += 1
        layer = merged + layer[len(layer) // 2 * 2:]
    nodes[str(next_id)] = NodeInstance(str(next_id), "Out")
    links.append(Link(layer[0], 0, str(next_id), "x"))
    return Workflow(nodes, links)


def timed(run, repeats: int) -> float:
    """Median CPU seconds of this process per call (on a shared machine wall time mostly
    measures the other processes; CPU time is the executor's own cost)."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return statistics.median(times)


def main() -> None:
    registry = Registry.from_modules(sys.modules[__name__])
    for name, workflow in [("chain", chain(1000)), ("wide", wide(500))]:
        count = len(workflow.nodes)
        cold = timed(lambda: Executor(registry).run(workflow), repeats=5)
        warm_executor = Executor(registry, cache=OutputCache())
        warm_executor.run(workflow)
        warm = timed(lambda: warm_executor.run(workflow), repeats=5)
        print(f"{name:>6} graph, {count} nodes: {cold * 1e6 / count:6.1f} us/node uncached, "
              f"{warm * 1e6 / count:6.1f} us/node fully cached ({cold * 1e3:.1f} ms / {warm * 1e3:.1f} ms)")
    small = chain(10)
    executor = Executor(registry)
    executor.run(small)
    warm = timed(lambda: executor.run(small), repeats=500)
    print(f"10-node workflow fully cached re-run: {warm * 1e3:.3f} ms (validation included)")


if __name__ == "__main__":
    main()
