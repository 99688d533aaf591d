"""The user's settings file: model folders, output/input folders, custom nodes, cache budgets.

A TOML file, found at the first of: ``--config FILE``, ``$NODEFLOW_CONFIG``, ``./nodeflow.toml``,
``$XDG_CONFIG_HOME/nodeflow/config.toml`` (``~/.config/nodeflow/config.toml``)::

    models = ["~/ComfyUI/models", "/data/stable-diffusion-webui/models"]  # searched in order
    output = "~/Pictures/nodeflow"
    input = "~/Pictures/inputs"
    custom_nodes = "~/nodeflow-nodes"
    preview_every = 1  # the editor's live sampler preview: every N steps (0: off)

    [cache]          # GiB of node outputs (models included) kept per device
    cpu = 8
    cuda = 16

Every key is optional. Relative paths are relative to the file's folder. Command-line options win
over environment variables, which win over the file. An unknown key or a value of the wrong type
is an error naming the file and the key; reading the file never executes anything.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nodeflow.errors import NodeflowError
from nodeflow.runtime.paths import expand_user

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

GIB = 1024**3
MAX_CACHE_GIB = 2**20  # a bound that keeps the byte count finite (inf, nan and 1e308 are refused)
PATH_KEYS = ("output", "input", "custom_nodes")
CACHE_DEVICES = ("cpu", "cuda", "mps")


class ConfigError(NodeflowError):
    """The settings file cannot be used."""


@dataclass(frozen=True)
class Config:
    """What the settings file says (empty when there is none)."""

    source: Path | None = None
    models: tuple[Path, ...] = ()
    output: Path | None = None
    input: Path | None = None
    custom_nodes: Path | None = None
    cache_bytes: dict[str, int] = field(default_factory=dict)
    preview_every: int = 1


def default_locations() -> list[Path]:
    """Where a settings file is looked for when none is named, in order."""
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path("nodeflow.toml"), config_home / "nodeflow" / "config.toml"]


def find_config(explicit: str | os.PathLike | None = None) -> Path | None:
    """The settings file to read: ``explicit`` (which must exist), ``$NODEFLOW_CONFIG``, or the
    first default location that exists."""
    named = explicit or os.environ.get("NODEFLOW_CONFIG")
    if named:
        path = expand_user(named)
        if not path.is_file():
            raise ConfigError(f"settings file {path} not found")
        return path.absolute()
    found = next((path for path in default_locations() if path.is_file()), None)
    return found.absolute() if found else None


def load_config(explicit: str | os.PathLike | None = None) -> Config:
    """Read the settings file (see the module docstring); ``Config()`` when there is none."""
    path = find_config(explicit)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it: {error}") from None
    except ValueError:  # tomllib lets out one more: int() refusing a number over Python's digit limit
        raise ConfigError(f"{path}: not valid TOML: a number has more than "
                          f"{sys.get_int_max_str_digits()} digits") from None
    return parse_config(data, path)


def parse_config(data: dict, path: Path) -> Config:
    unknown = sorted(set(data) - {"models", "cache", "preview_every", *PATH_KEYS})
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r}; known: models, output, input, "
                          "custom_nodes, preview_every, [cache]")
    preview_every = data.get("preview_every", 1)
    if isinstance(preview_every, bool) or not isinstance(preview_every, int) or preview_every < 0:
        raise ConfigError(f"{path}: preview_every must be a whole number of steps (0: off), got {preview_every!r}")
    base = path.parent

    def folder(key: str, value) -> Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: {key} must be a folder path (a string), got {value!r}")
        if "\0" in value:
            raise ConfigError(f"{path}: {key}: a folder path cannot hold a NUL character, got {value!r}")
        try:
            return base / expand_user(value)
        except NodeflowError as error:
            raise ConfigError(f"{path}: {key}: {error}") from None

    models = data.get("models", [])
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list):
        raise ConfigError(f"{path}: models must be a list of folder paths, got {models!r}")
    paths = {key: folder(key, data[key]) for key in PATH_KEYS if key in data}
    return Config(source=path, models=tuple(folder("models", value) for value in models),
                  cache_bytes=_cache_budgets(data.get("cache", {}), path), preview_every=preview_every, **paths)


def _cache_budgets(table, path: Path) -> dict[str, int]:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [cache] must be a table of GiB per device")
    budgets = {}
    for device, gib in table.items():
        if device not in CACHE_DEVICES:
            raise ConfigError(f"{path}: [cache] {device!r} is not a device; use {', '.join(CACHE_DEVICES)}")
        if isinstance(gib, bool) or not isinstance(gib, (int, float)) or not 0 <= gib <= MAX_CACHE_GIB:
            raise ConfigError(f"{path}: [cache] {device} must be a number of GiB from 0 to {MAX_CACHE_GIB}, "
                              f"got {gib!r}")
        budgets[device] = int(gib * GIB)
    return budgets
