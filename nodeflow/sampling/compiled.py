"""``--compile``: the U-Net compiled with torch.compile, for users who turn it on.

The module is compiled in place (``nn.Module.compile``), so it stays the same object with the same
attributes, patches and cache entry; the first call of each new shape compiles (seconds to a
minute), later calls run the compiled graph. Worth it on a GPU for many runs of one size; on a CPU
the gain is small and it needs a C++ compiler. Off by default.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def prepared(model, compile: bool):
    """``model`` (a loaded DiffusionModel) as the run asks for it: its U-Net compiled with
    ``--compile``, unless its blocks stream from the CPU (``--vram low``), whose weight swaps would
    break the compiled graph at every block (then a warning says so). Returns ``model``."""
    from nodeflow.models.streaming import streaming_device

    if not compile:
        return model
    if streaming_device(model.unet) is not None:
        logger.warning("--compile is ignored for this U-Net: --vram (low, or auto on a GPU short of memory) "
                       "streams its blocks from the CPU")
        return model
    compile_unet(model)
    return model


def compile_unet(model) -> None:
    """Compile ``model.unet`` (a DiffusionModel's) in place; a second call does nothing."""
    unet = model.unet
    if getattr(unet, "_compiled_call_impl", None) is not None:
        return
    logger.info("compiling the U-Net with torch.compile: its first step of each new size takes longer")
    unet.compile()
