"""The node types available to a run: built-in packs, installed packs, a user folder.

- Built-ins: every module of the package ``nodeflow_nodes`` (the repository's ``nodes/``).
- Installed packs: entry points in the group ``nodeflow.nodes``, each naming a module.
- A user folder of custom node modules (``--custom-nodes`` / ``NODEFLOW_CUSTOM_NODES``): every
  ``*.py`` file and every package (folder with ``__init__.py``) in it.

A pack that fails to import is logged with its file and error, recorded in ``load_errors`` and
skipped; start-up continues. Two packs declaring the same id is an error naming both.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import pkgutil
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from nodeflow.errors import NodeDeclarationError, UnknownNodeType
from nodeflow.spec import NodeSpec, spec_of

logger = logging.getLogger(__name__)

BUILTIN_PACKAGE = "nodeflow_nodes"
ENTRY_POINT_GROUP = "nodeflow.nodes"


@dataclass(frozen=True)
class PackError:
    """A node pack that could not be imported."""

    source: str
    error: str


@dataclass
class Registry:
    """Node specs by id."""

    specs: dict[str, NodeSpec] = field(default_factory=dict)
    load_errors: list[PackError] = field(default_factory=list)

    @classmethod
    def load(cls, paths=None, *, builtins: bool = True, entry_point_packs: bool = True,
             extra_modules: Iterable[str | ModuleType] = ()) -> Registry:
        """Collect node types from every source (see the module docstring)."""
        registry = cls()
        if builtins:
            registry._add_package(BUILTIN_PACKAGE)
        if entry_point_packs:
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                registry._add_import(entry.value.split(":")[0], f"entry point {entry.name!r}")
        folder = getattr(paths, "custom_nodes_dir", None)
        if folder is not None:
            registry.add_folder(Path(folder))
        for module in extra_modules:
            if isinstance(module, ModuleType):
                registry.add_module(module)
            else:
                registry._add_import(module, module)
        return registry

    @classmethod
    def from_modules(cls, *modules: ModuleType | str) -> Registry:
        """Only the given modules (tests, embedding)."""
        return cls.load(builtins=False, entry_point_packs=False, extra_modules=modules)

    def get(self, type_id: str, node_id: str | None = None) -> NodeSpec:
        try:
            return self.specs[type_id]
        except KeyError:
            raise UnknownNodeType(type_id, node_id) from None

    def __contains__(self, type_id: str) -> bool:
        return type_id in self.specs

    def __iter__(self):
        return iter(sorted(self.specs.values(), key=lambda spec: (spec.category, spec.display)))

    def add_module(self, module: ModuleType) -> None:
        """Register every decorated function defined at the top level of ``module``."""
        for value in vars(module).values():
            spec = spec_of(value)
            if spec is None:
                continue
            existing = self.specs.get(spec.id)
            if existing is not None and existing.function is not spec.function:
                raise NodeDeclarationError(
                    f"node id {spec.id!r} is declared twice: in {existing.module} and in {spec.module}")
            self.specs[spec.id] = spec

    def add_folder(self, folder: Path) -> None:
        """Import every ``*.py`` module and package in a user folder of custom nodes."""
        if not folder.is_dir():
            logger.warning("custom nodes folder %s does not exist", folder)
            return
        for path in sorted(folder.iterdir()):
            if path.name.startswith((".", "_")):
                continue
            if path.suffix == ".py":
                self._add_file(path, path)
            elif (path / "__init__.py").is_file():
                self._add_file(path / "__init__.py", path)

    def _add_package(self, package_name: str) -> None:
        package = self._guarded(package_name, lambda: importlib.import_module(package_name))
        if package is None:
            return
        for info in pkgutil.iter_modules(package.__path__, prefix=package_name + "."):
            self._add_import(info.name, info.name)

    def _add_import(self, module_name: str, source: str) -> None:
        module = self._guarded(source, lambda: importlib.import_module(module_name))
        if module is not None:
            self.add_module(module)

    def _add_file(self, file: Path, source: Path) -> None:
        name = f"nodeflow_custom_{source.stem}"

        def load() -> ModuleType:
            spec = importlib.util.spec_from_file_location(
                name, file, submodule_search_locations=[str(source)] if source.is_dir() else None)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return module

        module = self._guarded(str(source), load)
        if module is not None:
            self.add_module(module)

    def _guarded(self, source: str, load: Callable[[], ModuleType]) -> ModuleType | None:
        """``load()``, or None when the pack fails: any exception, and also a pack that calls
        sys.exit() or raises a bare BaseException, is reported and skipped (Ctrl-C is not)."""
        try:
            return load()
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            self._record(source, error)
            return None

    def _record(self, source: str, error: BaseException) -> None:
        if isinstance(error, NodeDeclarationError):
            message = str(error)
        else:
            last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
            where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
            message = f"{type(error).__name__}: {error}{where}"
        logger.error("node pack %s failed to load and was skipped: %s", source, message)
        self.load_errors.append(PackError(source, message))
