"""Style model files -> nodeflow.models.style_model.StyleAdapter (the T2I-Adapter style model,
e.g. t2iadapter_style_sd14v1.pth: keys ``style_embedding``, ``ln_pre``, ``transformer_layes.N.*``,
``ln_post``, ``proj``). The configuration comes from the shapes: tokens and width from
``style_embedding`` (1, T, W), the text width from ``proj`` (W, C), the depth from the blocks; the
heads (8) are the released model's. FLUX's Redux models, the other kind ComfyUI loads here, are
refused by name. Weights stay in float32, as ComfyUI runs this model.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.build_errors import built
from nodeflow.loading.files import read_state_dict
from nodeflow.models.meta import load_on_meta
from nodeflow.models.style_model import StyleAdapter, StyleAdapterConfig

logger = logging.getLogger(__name__)

_BLOCK = re.compile(r"transformer_layes\.(\d+)\.")


def load_style_model(path: str | Path, *, device: torch.device | str = "cpu") -> StyleAdapter:
    path = Path(path)
    sd, _ = read_state_dict(path)
    if "redux_down.weight" in sd:
        raise ModelFileError(f"{path}: a FLUX Redux style model, for FLUX, a model family nodeflow does not run")
    if "style_embedding" not in sd or "proj" not in sd:
        raise ModelFileError(f"{path}: not a T2I-Adapter style model (expected style_embedding, "
                             "transformer_layes.N.* and proj)")
    embedding, proj = sd["style_embedding"], sd["proj"]
    if embedding.ndim != 3 or proj.ndim != 2 or proj.shape[0] != embedding.shape[-1]:
        raise ModelFileError(f"{path}: style_embedding {tuple(embedding.shape)} and proj {tuple(proj.shape)} "
                             "do not fit (expected (1, tokens, width) and (width, text width))")
    layers = len({match.group(1) for key in sd if (match := _BLOCK.match(key))})
    config = StyleAdapterConfig(width=embedding.shape[-1], context_dim=proj.shape[1], layers=layers,
                                tokens=embedding.shape[1])
    model = built(path, "style model", lambda: load_on_meta(lambda: StyleAdapter(config), sd, device=device,
                                                          dtype=torch.float32))
    logger.info("%s: style model, %d tokens of width %d", path.name, config.tokens, config.context_dim)
    return model
