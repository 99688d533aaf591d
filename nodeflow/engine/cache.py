"""Content-addressed signatures and the output cache.

A node's signature hashes its type, type version, literal inputs, fingerprint (files it reads)
and the signatures of the upstream outputs it reads, by output index. It does not depend on
node ids, so the same sub-graph in another workflow hits the cache and A -> B -> A hits.

The cache keeps node outputs (tensors stay on their device, models included) in LRU order with a
byte budget per device type ("cpu", "cuda", "mps"); what does not fit is evicted oldest first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GIB = 1 << 30
DEFAULT_BUDGETS = {"cpu": 8 * GIB, "cuda": 16 * GIB, "mps": 8 * GIB}
_SCALARS = frozenset({int, float, str, bool, type(None)})
OPAQUE_OBJECT_BYTES = 1024  # the size assumed for a value we cannot measure


def signature(node_type: str, version: int, literals: dict[str, Any], fingerprint: str | None,
              upstream: dict[str, tuple[str, int]]) -> str:
    """The cache key of a node's outputs (see the module docstring)."""
    # repr of sorted items is canonical for the JSON values literals hold (and 3x cheaper than
    # JSON encoding); a nested dict in a different key order only costs a cache miss.
    text = repr((node_type, version, sorted(literals.items()), fingerprint, sorted(upstream.items())))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def measure(value: Any) -> dict[str, int]:
    """Bytes per device type held by ``value``: tensors (shared storage counted once),
    containers, modules and plain objects (their attributes)."""
    if isinstance(value, tuple) and all(type(item) in _SCALARS for item in value):
        return {}  # plain numbers and strings: nothing worth counting (the common fast path)
    sizes: dict[str, int] = {}
    _measure(value, sizes, seen=set(), depth=0)
    return sizes


def _measure(value: Any, sizes: dict[str, int], seen: set[int], depth: int) -> None:
    if value is None or isinstance(value, (bool, int, float, str, bytes)) or depth > 12:
        return
    if id(value) in seen:
        return
    seen.add(id(value))
    if hasattr(value, "untyped_storage") and hasattr(value, "device"):  # a torch.Tensor
        storage = value.untyped_storage()
        key = ("storage", storage.data_ptr(), value.device.type)
        if storage.data_ptr() and key in seen:
            return
        seen.add(key)
        device = value.device.type
        sizes[device] = sizes.get(device, 0) + storage.nbytes()
        return
    if hasattr(value, "nbytes") and isinstance(getattr(value, "nbytes"), int):  # numpy arrays
        sizes["cpu"] = sizes.get("cpu", 0) + value.nbytes
        return
    children: Iterable[Any]
    if isinstance(value, dict):
        children = value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = value
    elif hasattr(value, "__dict__"):
        children = vars(value).values()
    elif hasattr(value, "__slots__"):
        children = [getattr(value, name, None) for name in value.__slots__]
    else:
        sizes["cpu"] = sizes.get("cpu", 0) + OPAQUE_OBJECT_BYTES
        return
    for child in children:
        _measure(child, sizes, seen, depth + 1)


@dataclass
class _Entry:
    outputs: tuple
    sizes: dict[str, int]


class OutputCache:
    """LRU cache of node outputs by signature, bounded by bytes per device type.

    Thread-safe: the GUI reads statistics while a worker runs.
    """

    def __init__(self, budgets: dict[str, int] | None = None) -> None:
        self.budgets = dict(DEFAULT_BUDGETS if budgets is None else budgets)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._used: dict[str, int] = {}  # bytes per device type, kept in step with _entries
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry.outputs

    def put(self, key: str, outputs: tuple) -> None:
        sizes = measure(outputs)
        if not sizes:  # nothing measurable: no budget to check
            with self._lock:
                self._drop(key)
                self._entries[key] = _Entry(outputs, sizes)
            return
        with self._lock:
            self._drop(key)
            if any(size > self.budgets.get(device, 0) for device, size in sizes.items()):
                return  # larger than the whole budget: not kept
            self._entries[key] = _Entry(outputs, sizes)
            for device, size in sizes.items():
                self._used[device] = self._used.get(device, 0) + size
            self._evict()

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            for device, size in entry.sizes.items():
                self._used[device] -= size

    def _evict(self) -> None:
        """Drop least recently used entries until every device is within its budget."""
        while self._entries and any(size > self.budgets.get(device, 0)
                                    for device, size in self._used.items()):
            self._drop(next(iter(self._entries)))

    def bytes_used(self) -> dict[str, int]:
        """Bytes held per device type (devices holding nothing are left out)."""
        with self._lock:
            return {device: size for device, size in self._used.items() if size}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._used.clear()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
