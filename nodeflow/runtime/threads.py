"""How many CPU threads a computation gets: one for small work, all of torch's for large.

Small networks gain little from a second thread (the embedded model's U-Net at 64 px: 14.9 ms
with one thread, 13.6 ms with two on a 2-core machine) but lose badly when another process
holds a core: every operator waits at a barrier for a thread that is not running, and a 0.3 s
sampling took 4-15 s under load with two threads. Large work is split over the cores, as torch
does by default. tests/bench/bench_threads.py shows both, with and without a competing load.

Work is measured as network parameters times the positions they are applied at (for a U-Net,
parameters x batch x latent height x width): a rough count of multiply-adds per call; a U-Net's
self-attention adds ``SCORE_WORK`` per score entry (it grows with the square of the latent's area:
a small U-Net on a large latent is attention-bound, 1.6x slower on one thread than on two).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch

logger = logging.getLogger(__name__)

SMALL_WORK = 4e9  # below this many parameter-positions per call, one thread
#: One self-attention score entry (a dot product, an exponential, a weighted sum) costs about as
#: much as this many parameter-positions of a convolution: 2 ns against 0.012 ns with one thread
#: (the scaled-down test U-Net at 32x32 latent, with and without its transformers).
SCORE_WORK = 170


def threads_for(work: float, available: int | None = None) -> int:
    """The thread count for a computation of ``work`` parameter-positions per call:
    one when small, else ``available`` (default: torch's current count, which honours
    OMP_NUM_THREADS and torch.set_num_threads)."""
    available = torch.get_num_threads() if available is None else available
    return 1 if work < SMALL_WORK else max(1, available)


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous count. Set in the
    thread that runs the computation (OpenMP keeps the count per calling thread)."""
    previous = torch.get_num_threads()
    if count == previous:
        yield
        return
    logger.debug("running on %d CPU thread%s (was %d)", count, "" if count == 1 else "s", previous)
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def network_work(network, positions: int) -> float:
    """Parameters of ``network`` times the ``positions`` it runs at (a stand-in that is not a
    torch module, as tests use, counts as no work)."""
    if not isinstance(network, torch.nn.Module):
        return 0.0
    return float(sum(p.numel() for p in network.parameters())) * positions
