import pytest


@pytest.fixture
def stub_registry():
    """A registry with only the stub pack, call counters reset."""
    from nodeflow.registry import Registry
    from tests import stub_nodes

    stub_nodes.CALLS.clear()
    return Registry.from_modules(stub_nodes)
