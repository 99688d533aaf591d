"""Signatures and the byte-bounded LRU output cache."""

import numpy as np
import torch

from nodeflow.engine.cache import OutputCache, measure, signature


def test_signature_depends_on_every_part():
    base = signature("T", 1, {"a": 1}, None, {"x": ("abc", 0)})
    assert base == signature("T", 1, {"a": 1}, None, {"x": ("abc", 0)})
    variants = [signature("U", 1, {"a": 1}, None, {"x": ("abc", 0)}),
                signature("T", 2, {"a": 1}, None, {"x": ("abc", 0)}),
                signature("T", 1, {"a": 2}, None, {"x": ("abc", 0)}),
                signature("T", 1, {"a": 1}, "file:1", {"x": ("abc", 0)}),
                signature("T", 1, {"a": 1}, None, {"x": ("abc", 1)}),
                signature("T", 1, {"a": 1}, None, {"x": ("abd", 0)})]
    assert len({base, *variants}) == 7


def test_measure_counts_tensors_once_and_recurses():
    t = torch.zeros(1000, dtype=torch.float32)
    view = t[10:20]

    class Holder:
        def __init__(self):
            self.weights = {"w": t, "again": view}

    assert measure((t, view, [t])) == {"cpu": 4000}
    assert measure(Holder()) == {"cpu": 4000}
    assert measure({"samples": np.zeros(10, dtype=np.uint8)}) == {"cpu": 10}
    module = torch.nn.Linear(10, 10)
    assert measure(module)["cpu"] == (100 + 10) * 4


def test_lru_eviction_by_bytes():
    cache = OutputCache({"cpu": 2500})
    for key in "abc":
        cache.put(key, (torch.zeros(250),))  # 1000 bytes each
    assert "a" not in cache and "b" in cache and "c" in cache
    cache.get("b")  # b becomes the most recent
    cache.put("d", (torch.zeros(250),))
    assert "c" not in cache and "b" in cache and "d" in cache
    assert cache.bytes_used() == {"cpu": 2000}


def test_values_larger_than_the_budget_are_not_kept():
    cache = OutputCache({"cpu": 100})
    cache.put("big", (torch.zeros(1000),))
    assert "big" not in cache and cache.get("big") is None


def test_budgets_are_per_device_and_clear_empties():
    cache = OutputCache({"cpu": 1000, "meta": 100})
    cache.put("cpu", (torch.zeros(200),))                      # 800 cpu bytes
    cache.put("meta", (torch.zeros(10, device="meta"),))       # 40 meta bytes, other budget
    assert "cpu" in cache and "meta" in cache
    assert cache.bytes_used() == {"cpu": 800, "meta": 40}
    cache.put("cpu", (torch.zeros(100),))                      # replacing a key frees its bytes
    assert cache.bytes_used() == {"cpu": 400, "meta": 40}
    cache.clear()
    assert len(cache) == 0 and cache.bytes_used() == {}


def test_unmeasurable_objects_cost_a_fixed_amount():
    from nodeflow.engine.cache import OPAQUE_OBJECT_BYTES

    assert measure((len,)) == {"cpu": OPAQUE_OBJECT_BYTES}
    assert measure((1, "text", None)) == {}
