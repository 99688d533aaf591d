"""Hypernetworks as NovelAI introduced them and AUTOMATIC1111's webui trains them: for each
attention width of the U-Net, two small MLPs that rewrite what an attention reads its keys and
its values from, as a residual scaled by the strength s:

    k_in = c + s * MLP_k(c),    v_in = c + s * MLP_v(c)

where c is the attention's context (the normalised tokens themselves in a self-attention, the text
in a cross-attention) and the pair is chosen by c's width (SD1: 320, 640, 1280 for the
self-attentions, 768 for the text). An MLP is a chain of linear layers, each followed by the
file's activation and, when the file has them, a LayerNorm.

Which linears are activated follows ComfyUI (comfy_extras/nodes_hypernetwork.py), whose images
nodeflow reproduces: every one but the last, unless ``activate_output``; in a file with layer norms
every one (ComfyUI counts the norms among the layers, so none of its linears is the last).
AUTOMATIC1111 leaves the last linear without activation in that case too. Dropout layers are a
training device and are not built (AUTOMATIC1111 evaluates the modules in eval mode; ComfyUI's stay
in training mode and drop 30% at random, which no image can reproduce).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nodeflow.models.unet_patches import PatchCall

#: The activation names a hypernetwork file may give (AUTOMATIC1111's, as ComfyUI supports them);
#: "swish" is Hardswish there.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "linear": nn.Identity, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "elu": nn.ELU, "swish": nn.Hardswish,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softsign": nn.Softsign, "mish": nn.Mish,
}

#: One layer of an MLP as stored: ("linear", weight (out, in), bias (out,)) or ("norm", weight (n,), bias (n,)).
Layer = tuple[str, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class MLPOptions:
    """The file's options that shape its MLPs."""

    activation: str = "linear"
    activate_output: bool = False


def build_mlp(layers: list[Layer], options: MLPOptions) -> nn.Sequential:
    """The MLP of ``layers`` (in order) with the activation placed as the module docstring says."""
    has_norms = any(kind == "norm" for kind, _, _ in layers)
    linears = [index for index, (kind, _, _) in enumerate(layers) if kind == "linear"]
    modules: list[nn.Module] = []
    for index, (kind, weight, bias) in enumerate(layers):
        if kind == "norm":
            norm = nn.LayerNorm(weight.shape[0], device=weight.device, dtype=weight.dtype)
            norm.load_state_dict({"weight": weight, "bias": bias})
            modules.append(norm)
            continue
        linear = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
        linear.load_state_dict({"weight": weight, "bias": bias})
        modules.append(linear)
        last = index == linears[-1]
        if options.activation != "linear" and (not last or options.activate_output or has_norms):
            modules.append(ACTIVATIONS[options.activation]())
    return nn.Sequential(*modules).eval()


class Hypernetwork(nn.Module):
    """The MLP pairs (keys, values) of a hypernetwork, by attention width."""

    def __init__(self, pairs: dict[int, tuple[nn.Module, nn.Module]]) -> None:
        super().__init__()
        self.pairs = nn.ModuleDict({str(width): nn.ModuleList(pair) for width, pair in pairs.items()})

    @property
    def widths(self) -> list[int]:
        return sorted(int(width) for width in self.pairs)

    def residuals(self, context: torch.Tensor, value: torch.Tensor,
                  strength: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(context + s MLP_k(context), value + s MLP_v(value)) for the pair of the context's width
        (B, T, D); both unchanged when the hypernetwork has none for D."""
        pair = self.pairs[str(context.shape[-1])] if str(context.shape[-1]) in self.pairs else None
        if pair is None:
            return context, value
        return context + pair[0](context) * strength, value + pair[1](value) * strength


@dataclass(frozen=True, eq=False)
class HypernetworkPatch:
    """An ``attn1_patch`` and ``attn2_patch`` (nodeflow.models.unet_patches) applying a hypernetwork
    at ``strength`` to what every attention reads its keys and values from."""

    hypernetwork: Hypernetwork
    strength: float

    def __call__(self, n: torch.Tensor, context: torch.Tensor, value: torch.Tensor,
                 call: PatchCall) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        context, value = self.hypernetwork.residuals(context, value, self.strength)
        return n, context, value
