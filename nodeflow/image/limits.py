"""How many pixels an image file may decode to: one rule for LoadImage (files.py) and the editor's
pictures of its files (gui/image_input.py), kept free of torch so the editor can read it."""

from __future__ import annotations

import os

from nodeflow.errors import ModelFileError

DEFAULT_MAX_IMAGE_PIXELS = 2**26
MAX_PIXELS_VARIABLE = "NODEFLOW_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The most pixels LoadImage decodes from one file (all frames together):
    ``$NODEFLOW_MAX_IMAGE_PIXELS``, default 2^26 (8192 x 8192; the IMAGE tensor is then 768 MB)."""
    value = os.environ.get(MAX_PIXELS_VARIABLE, "")
    try:
        return int(value) if value.strip() else DEFAULT_MAX_IMAGE_PIXELS
    except ValueError:
        raise ModelFileError(f"${MAX_PIXELS_VARIABLE} must be a whole number of pixels, got {value!r}") from None
