import pytest


def pytest_configure(config):
    """One torch thread for the suite: the test models are tiny, so threads only add
    synchronisation, and on a shared 2-core machine two OpenMP threads per process made
    forwards tens of times slower (measured: a tiny U-Net forward 4 s vs 0.14 s)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def stub_registry():
    """A registry with only the stub pack, call counters reset."""
    from nodeflow.engine.registry import Registry
    from tests import stub_nodes

    stub_nodes.CALLS.clear()
    return Registry.from_modules(stub_nodes)
