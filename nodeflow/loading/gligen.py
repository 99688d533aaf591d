"""GLIGEN files -> nodeflow.models.gligen.Gligen (the original release's layout, e.g.
gligen_sd14_textbox_pruned.safetensors): ``position_net.*`` and, per transformer block of the
U-Net, ``[model.diffusion_model.]{input_blocks.I.L | middle_block.L | output_blocks.I.L}
.transformer_blocks.T.fuser.*``.

The widths come from the shapes: the phrase width from ``position_net.null_positive_feature``,
the grounding tokens' from ``position_net.linears.4``, each block's from its ``fuser.linear``; the
heads are SD1.x's (``fuser_heads``). Weights stay in float32.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.build_errors import built
from nodeflow.loading.files import read_state_dict
from nodeflow.models.gligen import GatedSelfAttention, Gligen, Location, PositionNet, fuser_heads
from nodeflow.models.meta import load_on_meta

logger = logging.getLogger(__name__)

_FUSER = re.compile(r"(?:^|\.)(?:(input|output)_blocks\.(\d+)|(middle)_block)\.\d+\.transformer_blocks\.(\d+)"
                    r"\.fuser\.(.+)$")
_KIND_ORDER = {"input": 0, "middle": 1, "output": 2}
POSITION_KEYS = ("position_net.null_positive_feature", "position_net.linears.4.weight")


def fuser_tensors(sd: dict[str, torch.Tensor]) -> dict[Location, dict[str, torch.Tensor]]:
    """The gated blocks' tensors by location, keys relative to the block, in U-Net order."""
    found: dict[Location, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        match = _FUSER.search(key)
        if match is None:
            continue
        kind, index, middle, block, name = match.groups()
        location = (kind or middle, int(index or 0), int(block))
        found.setdefault(location, {})[name] = value
    return dict(sorted(found.items(), key=lambda item: (_KIND_ORDER[item[0][0]], *item[0][1:])))


def load_gligen(path: str | Path, *, device: torch.device | str = "cpu") -> Gligen:
    path = Path(path)
    sd, _ = read_state_dict(path)
    fusers = fuser_tensors(sd)
    if not fusers or any(key not in sd for key in POSITION_KEYS):
        raise ModelFileError(f"{path}: not a GLIGEN model (expected position_net.* and "
                             "input_blocks.I.L.transformer_blocks.T.fuser.* keys)")
    if any("linear.weight" not in tensors for tensors in fusers.values()):
        raise ModelFileError(f"{path}: a GLIGEN gated block without fuser.linear.weight")
    text_dim = sd["position_net.null_positive_feature"].shape[0]
    key_dim = sd["position_net.linears.4.weight"].shape[0]
    tensors = {key: value for key, value in sd.items() if key.startswith("position_net.")}
    for number, block in enumerate(fusers.values()):
        tensors.update({f"fusers.{number}.{name}": value for name, value in block.items()})

    def build() -> Gligen:
        blocks = {}
        for location, block in fusers.items():
            query_dim = block["linear.weight"].shape[0]
            blocks[location] = GatedSelfAttention(query_dim, key_dim, *fuser_heads(query_dim, key_dim))
        return Gligen(PositionNet(text_dim, key_dim), blocks)

    model = built(path, "GLIGEN model", lambda: load_on_meta(build, tensors, device=device, dtype=torch.float32))
    logger.info("%s: GLIGEN, %d gated blocks, phrases %d wide", path.name, len(fusers), text_dim)
    return model
