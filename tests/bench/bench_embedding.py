"""Embedding a workflow in a saved PNG (SaveImage's text chunks) for chains of 5k, 20k and 50k
nodes: the time should grow linearly (it was quadratic: 0.5 / 5.1 / 36 s).

    python tests/bench/bench_embedding.py
"""

import os
import time


def main() -> None:
    from nodeflow.engine.registry import Registry
    from nodeflow.engine.workflow import Link, NodeInstance, Workflow
    from nodeflow.formats.png import workflow_text_chunks

    registry = Registry.load()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    first = None
    for n in (5_000, 20_000, 50_000):
        nodes = {"0": NodeInstance("0", "EmptyImage", {"width": 8, "height": 8, "batch_size": 1, "color": 0})}
        nodes.update({str(i): NodeInstance(str(i), "ImageInvert") for i in range(1, n)})
        workflow = Workflow(nodes, [Link(str(i - 1), 0, str(i), "image") for i in range(1, n)])
        started = time.perf_counter()
        workflow_text_chunks(workflow, registry, (8, 8))
        seconds = time.perf_counter() - started
        first = first or seconds / n
        print(f"{n:>6} nodes: {seconds:6.2f} s   per node {seconds / n * 1e6:6.1f} us   "
              f"(x{seconds / n / first:.2f} of the 5k per-node time)")


if __name__ == "__main__":
    main()
