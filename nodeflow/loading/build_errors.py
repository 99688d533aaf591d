"""One clear error for a model file whose tensors do not build the model it claims to be.

Every loader builds its network from the file's tensors (``load_state_dict(strict=True)`` on the
meta device, or shapes read from the keys); what fails there is the file, not nodeflow, so the
user gets one line that names the file and the part instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from nodeflow.errors import ModelFileError
from nodeflow.runtime.devices import is_out_of_memory

T = TypeVar("T")

MESSAGE_LIMIT = 600  # characters of torch's message kept (it lists every missing and unexpected key)


def built(path: str | Path, what: str, build: Callable[[], T]) -> T:
    """``build()``, or a ModelFileError naming ``path`` and ``what`` ("U-Net", "ControlNet" ...)
    when the file's tensors do not fit: torch's RuntimeError (missing or unexpected keys, wrong
    shapes; its first line, a header, is left out), or a KeyError, ValueError or IndexError from
    reading the configuration off the keys (named with its type: "KeyError: 'x'" alone says little)."""
    try:
        return build()
    except RuntimeError as error:  # load_state_dict(strict=True) lists missing/unexpected keys
        if isinstance(error, NotImplementedError) or is_out_of_memory(error):
            raise  # not the file's fault: out of memory (the caller may say --vram low) or a missing kernel
        detail = str(error).split("\n", 1)[-1].strip()
    except (KeyError, ValueError, IndexError) as error:
        detail = f"{type(error).__name__}: {error}"
    raise ModelFileError(f"{path}: the {what} does not match its configuration: {detail[:MESSAGE_LIMIT]}")
