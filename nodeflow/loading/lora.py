"""LoRA files (Hu et al. 2021) for SD1.x, SD2.x and SDXL: kohya / AUTOMATIC1111, LyCORIS, PEFT and
diffusers key layouts.

A LoRA holds, per patched layer, ``lora_down`` (rank x in), ``lora_up`` (out x rank) and an
optional ``alpha``; the patched weight is W + strength * (alpha / rank) * up @ down (reshaped for
convolutions). LyCORIS files hold LoCon, LoHa, LoKr or full layers (with DoRA's ``dora_scale``)
under the same layer names: their weights are in nodeflow.loading.layer_deltas. PEFT and diffusers
files (``unet.``/``text_encoder.``/``text_encoder_2.`` + a module path, ``lora_A``/``lora_B``) are
read as the kohya names of those paths. Layer names are the kohya form of diffusers module paths
(``lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q``) or of the original
checkpoint's (``lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q``), and
``lora_te_text_model_encoder_layers_0_self_attn_q_proj`` for the text encoder; both are mapped to
nodeflow's parameter names (the original checkpoint's). SDXL LoRAs name CLIP-L ``lora_te1_*`` and
CLIP-G ``lora_te2_*``: they patch the ``clip_l`` / ``clip_g`` towers of SDXL's text model
(nodeflow.text.families.TextTowers).

Patches never change the loaded model: ``PatchedModule`` runs the shared base module with the
patched weights substituted (torch.func.functional_call), computing them once per device.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from nodeflow.errors import ModelFileError
from nodeflow.loading.layer_deltas import SUFFIXES, LayerDelta, layer_kind

_KOHYA = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
# PEFT / diffusers suffixes -> kohya's
_RENAMED = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight",
            "lora.down.weight": "lora_down.weight", "lora.up.weight": "lora_up.weight",
            "lora_linear_layer.down.weight": "lora_down.weight", "lora_linear_layer.up.weight": "lora_up.weight"}
# module-path prefixes of PEFT / diffusers files -> kohya's ("text_encoder_2." before "text_encoder.")
_PATH_PREFIXES = (("unet.", "lora_unet_"), ("base_model.model.", "lora_unet_"),
                  ("text_encoder_2.", "lora_te2_"), ("text_encoder.", "lora_te1_"))
_SUFFIX = re.compile(r"\.(" + "|".join(re.escape(s) for s in (*_RENAMED, *SUFFIXES)) + r")$")


def _unet_diffusers_to_original(name: str, layers_per_block: int = 2) -> str | None:
    """Map a diffusers U-Net module path to the original key prefix (SD1 layout)."""
    per_level = layers_per_block + 1
    resnet = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
              "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
    patterns = [
        (r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)",
         lambda i, j, rest: f"input_blocks.{per_level * int(i) + int(j) + 1}.1.{rest}"),
        (r"down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)$",
         lambda i, j, rest: f"input_blocks.{per_level * int(i) + int(j) + 1}.0.{resnet.get(rest, rest)}"),
        (r"down_blocks\.(\d+)\.downsamplers\.0\.conv$", lambda i: f"input_blocks.{per_level * (int(i) + 1)}.0.op"),
        (r"mid_block\.attentions\.0\.(.+)", lambda rest: f"middle_block.1.{rest}"),
        (r"mid_block\.resnets\.(\d+)\.(\w+)$", lambda j, rest: f"middle_block.{2 * int(j)}.{resnet.get(rest, rest)}"),
        (r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)",
         lambda i, j, rest: f"output_blocks.{per_level * int(i) + int(j)}.1.{rest}"),
        (r"up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)$",
         lambda i, j, rest: f"output_blocks.{per_level * int(i) + int(j)}.0.{resnet.get(rest, rest)}"),
        (r"up_blocks\.(\d+)\.upsamplers\.0\.conv$",  # after the resnet (and attention, if any)
         lambda i: f"output_blocks.{per_level * int(i) + per_level - 1}.{{1|2}}.conv"),
        (r"time_embedding\.linear_(\d)$", lambda k: f"time_embed.{0 if k == '1' else 2}"),
        (r"add_embedding\.linear_(\d)$", lambda k: f"label_emb.0.{0 if k == '1' else 2}"),  # SDXL's ADM input
        (r"conv_in$", lambda: "input_blocks.0.0"),
        (r"conv_out$", lambda: "out.2"),
    ]
    for pattern, build in patterns:
        match = re.fullmatch(pattern, name)
        if match:
            return build(*match.groups())
    return None


def _module_names(module: nn.Module) -> dict[str, str]:
    """kohya name (dots -> underscores) -> module path, for every module with a weight."""
    return {path.replace(".", "_"): path for path, child in module.named_modules()
            if path and isinstance(getattr(child, "weight", None), torch.Tensor)}


def _diffusers_names(unet: nn.Module) -> dict[str, str]:
    """kohya names of diffusers module paths that exist in our U-Net -> our module path."""
    ours = {path for path, _ in unet.named_modules()}
    names = {}
    layers = getattr(getattr(unet, "config", None), "num_res_blocks", 2)
    for prefix in _diffusers_module_paths(unet):
        original = _unet_diffusers_to_original(prefix, layers)
        if original is None:
            continue
        for candidate in (original.replace("{1|2}", "2"), original.replace("{1|2}", "1")):
            if candidate in ours:
                names[prefix.replace(".", "_")] = candidate
                break
    return names


def _diffusers_module_paths(unet: nn.Module):
    """Candidate diffusers module paths (enough to cover SD1's, SD2's and SDXL's layers: up to 4
    levels, 3 residual blocks per level, 10 transformer blocks deep)."""
    inner = ["proj_in", "proj_out"] + [f"transformer_blocks.{b}.{part}" for b in range(10) for part in (
        "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k", "attn2.to_v",
        "attn2.to_out.0", "ff.net.0.proj", "ff.net.2", "norm1", "norm2", "norm3")]
    resnet = ["norm1", "conv1", "time_emb_proj", "norm2", "conv2", "conv_shortcut"]
    for i in range(4):
        for j in range(3):
            yield from (f"down_blocks.{i}.attentions.{j}.{p}" for p in inner)
            yield from (f"down_blocks.{i}.resnets.{j}.{p}" for p in resnet)
        yield f"down_blocks.{i}.downsamplers.0.conv"
        yield f"up_blocks.{i}.upsamplers.0.conv"
        for j in range(4):
            yield from (f"up_blocks.{i}.attentions.{j}.{p}" for p in inner)
            yield from (f"up_blocks.{i}.resnets.{j}.{p}" for p in resnet)
    yield from (f"mid_block.attentions.0.{p}" for p in inner)
    for j in range(2):
        yield from (f"mid_block.resnets.{j}.{p}" for p in resnet)
    yield from ("time_embedding.linear_1", "time_embedding.linear_2", "add_embedding.linear_1",
                "add_embedding.linear_2", "conv_in", "conv_out")


def _text_names(text_model: nn.Module | None) -> dict[str, dict[str, str]]:
    """kohya text-encoder prefix (``te``, ``te1``, ``te2``) -> {kohya layer name: module path}.
    SDXL's two towers (modules ``clip_l``, ``clip_g``) are te1 and te2; a single encoder is te (and te1)."""
    if text_model is None:
        return {}
    towers = {"te1": "clip_l", "te2": "clip_g"}
    if all(isinstance(getattr(text_model, tower, None), nn.Module) for tower in towers.values()):
        return {encoder: {name: f"{tower}.{path}" for name, path in _module_names(getattr(text_model, tower)).items()}
                for encoder, tower in towers.items()}
    names = _module_names(text_model)
    return {"te": names, "te1": names}


def _split_key(key: str) -> tuple[str, str] | None:
    """(kohya layer name, kohya suffix) of a LoRA file's key, or None for a key of no layer."""
    # diffusers' old attention processors: attn1.processor.to_q_lora.down.weight
    key = re.sub(r"\.processor\.(to_[qkv]|to_out)_lora\.(down|up)\.weight$",
                 lambda m: f".{m.group(1)}{'.0' if m.group(1) == 'to_out' else ''}.lora.{m.group(2)}.weight", key)
    match = _SUFFIX.search(key)
    if not match:
        return None
    layer, suffix = key[:match.start()], _RENAMED.get(match.group(1), match.group(1))
    if layer.startswith(_KOHYA):
        return layer, suffix
    for prefix, kohya in _PATH_PREFIXES:
        if layer.startswith(prefix):
            return kohya + layer[len(prefix):].replace(".", "_"), suffix
    return None


def lora_patches(lora: dict[str, torch.Tensor], unet: nn.Module | None, text_model: nn.Module | None,
                 strength_model: float, strength_clip: float, source: str = "LoRA",
                 family: str = "") -> tuple[list, list, list]:
    """(U-Net patches, text encoder patches, unmatched layer names) of a LoRA state dict;
    ``family``: the model's family name, for the message refusing a layer of another family."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in lora.items():
        split = _split_key(key)
        if split:
            layers.setdefault(split[0], {})[split[1]] = value
    if not layers:
        raise ModelFileError(f"{source}: no LoRA layers in a known layout (kohya/A1111 lora_unet_*/lora_te_*, "
                             "LyCORIS, PEFT or diffusers)")
    unet_names = {**(_module_names(unet) if unet is not None else {}), **(_diffusers_names(unet) if unet is not None else {})}
    text_names = _text_names(text_model)
    unet_patches, text_patches, unmatched = [], [], []
    for name, parts in layers.items():
        kind = layer_kind(parts)
        if name.startswith("lora_unet_"):
            path = unet_names.get(name[len("lora_unet_"):])
            module, target, strength = unet, unet_patches, strength_model
        else:
            encoder, short = re.match(r"lora_(te[12]?)_(.+)", name).groups()
            names = text_names.get(encoder, {})
            path = names.get(short) or names.get(short.removeprefix("text_model_"))
            module, target, strength = text_model, text_patches, strength_clip
        if kind is None or path is None:
            unmatched.append(name)
            continue
        patches = [LayerDelta(path + ".weight", kind, parts, strength)]
        if kind == "full" and "diff_b" in parts:
            patches.append(LayerDelta(path + ".bias", kind, parts, strength, bias=True))
        for patch in patches:
            patch.check(source, name, module.get_parameter(patch.parameter), family)
        target.extend(patches)
    return unet_patches, text_patches, unmatched


class PatchedModule(nn.Module):
    """A base module run with patched weights substituted; the base is shared, never changed."""

    def __init__(self, base: nn.Module, patches: tuple[LayerDelta, ...]) -> None:
        super().__init__()
        self.base = base
        self.patches = tuple(patches)
        self._weights: dict[tuple, dict[str, torch.Tensor]] = {}

    @property
    def config(self):
        return self.base.config

    def _patched(self, device: torch.device) -> dict[str, torch.Tensor]:
        key = (str(device),)
        if key not in self._weights:
            parameters = dict(self.base.named_parameters())
            weights: dict[str, torch.Tensor] = {}
            for patch in self.patches:
                current = weights.get(patch.parameter, parameters[patch.parameter])
                weights[patch.parameter] = patch.new_weight(current)
            self._weights = {key: weights}
        return self._weights[key]

    def forward(self, *args, **kwargs):
        device = next(self.base.parameters()).device
        return torch.func.functional_call(self.base, self._patched(device), args, kwargs, strict=False)

    def run_submodule(self, path: str, *args, **kwargs):
        """Call the base's submodule ``path`` with its patched weights (callers that use one
        layer of the model outside its forward, like the text encoder's final layer norm)."""
        device = next(self.base.parameters()).device
        prefix = path + "."
        weights = {k[len(prefix):]: v for k, v in self._patched(device).items() if k.startswith(prefix)}
        return torch.func.functional_call(self.base.get_submodule(path), weights, args, kwargs, strict=False)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["base"], name)


def base_of(module: nn.Module) -> tuple[nn.Module, tuple]:
    """(the unpatched module, the patches already applied)."""
    if isinstance(module, PatchedModule):
        return module.base, module.patches
    return module, ()
