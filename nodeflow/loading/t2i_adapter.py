"""Load T2I-Adapter files (ControlNetLoader hands them here): the original TencentARC layout, or
diffusers' ``T2IAdapter`` layout (keys ``adapter.``; a ``save_pretrained`` folder or its weights
file), renamed into the original one:

- full: ``adapter.conv_in`` -> ``conv_in``; ``adapter.body.{i}.resnets.{j}`` -> ``body.{i*R+j}``
  (R residual blocks per level); ``adapter.body.{i}.in_conv`` -> ``body.{i*R}.in_conv``;
- light: ``adapter.body.{i}.resnets.{j}`` -> ``body.{i}.body.{j}``; ``in_conv``/``out_conv`` keep
  their names under ``body.{i}``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.build_errors import built
from nodeflow.loading.families import FAMILIES
from nodeflow.models.t2i_adapter import T2IAdapter, t2i_adapter_from_state_dict
from nodeflow.runtime.devices import model_dtype

WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def is_diffusers_t2i_adapter(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("adapter.") for k in sd)


def t2i_adapter_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' T2IAdapter keys -> the original layout (see the module docstring)."""
    light = "adapter.body.0.out_conv.weight" in sd
    blocks = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"adapter\.body\.0\.resnets\.(\d+)\.", k))),
                     default=1)
    out = {}
    for key, value in sd.items():
        name = key.removeprefix("adapter.")
        if m := re.match(r"body\.(\d+)\.resnets\.(\d+)\.(.*)", name):
            i, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            name = f"body.{i}.body.{j}.{rest}" if light else f"body.{i * blocks + j}.{rest}"
        elif not light and (m := re.match(r"body\.(\d+)\.in_conv\.(.*)", name)):
            name = f"body.{int(m.group(1)) * blocks}.in_conv.{m.group(2)}"
        out[name] = value
    return out


def read_diffusers_t2i_adapter(folder: Path) -> dict[str, torch.Tensor] | None:
    """The weights of a diffusers T2IAdapter folder, or None when ``folder`` is not one."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("_class_name") != "T2IAdapter":
        return None
    from nodeflow.loading.files import read_state_dict

    for name in WEIGHTS:
        if (folder / name).is_file():
            return read_state_dict(folder / name)[0]
    raise ModelFileError(f"{folder}: a diffusers T2IAdapter folder without {' or '.join(WEIGHTS)}")


def load_t2i_adapter(path: Path, sd: dict[str, torch.Tensor], *, device="cpu", dtype: str = "auto") -> T2IAdapter:
    """A T2I-Adapter from the tensors ``sd`` read from ``path`` (either layout)."""
    if "adapter" in sd and isinstance(sd["adapter"], dict):  # some training checkpoints nest it
        sd = sd["adapter"]
    plain = t2i_adapter_to_original(sd) if is_diffusers_t2i_adapter(sd) else dict(sd)
    device = torch.device(device)
    adapter = built(path, "T2I-Adapter",
                    lambda: t2i_adapter_from_state_dict(plain, device=device, dtype=model_dtype(device, dtype, "unet")))
    adapter.family = FAMILIES["sdxl"].name if adapter.config.xl else ""
    adapter.source = Path(path).name
    return adapter
