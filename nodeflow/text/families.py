"""The CLIP socket value of each model family, with ComfyUI's settings (comfy/sd1_clip.py,
comfy/text_encoders/sd2_clip.py, comfy/sdxl_clip.py).

====================  ===========================  ====  ==============  ==========  ==============
family                text encoder(s)              pad   layer           final norm  pooled
====================  ===========================  ====  ==============  ==========  ==============
SD1.x                 CLIP ViT-L/14                49407 last            yes         unprojected
SD2.x                 OpenCLIP ViT-H/14            0     penultimate     yes         projected
SDXL                  CLIP-L, then OpenCLIP bigG   49407 penultimate     no (both)   G's, projected
                                                   / 0   (both)
SDXL refiner          OpenCLIP bigG                0     penultimate     no          projected
====================  ===========================  ====  ==============  ==========  ==============

"Final norm" is whether the chosen layer's output goes through the final LayerNorm. The pooled
output is always the last layer's, normalised, at the first end token (49407); "projected" is that
times ``text_projection`` (x @ P). There is no padding mask, only the causal one, so the pad token
changes the result (and the empty prompt is encoded like any other).

SDXL encodes every prompt with both towers (the same windows, each padded with its own pad token)
and concatenates their hidden states on the feature axis, CLIP-L first: (1, 77 k, 768 + 1280) for
real files; the pooled output is CLIP-G's. CLIPSetLastLayer sets the layer of both towers to
``stop_at_clip_layer`` (ComfyUI's SDXLClipModel.set_clip_options passes it to each): -1 takes
each tower's last layer, still without the final norm; an index beyond a tower's depth gives that
tower's normalised last layer (so -13 on SDXL is CLIP-L's normalised output next to CLIP-G's
layer -13). Textual-inversion files for SDXL hold ``clip_l`` and ``clip_g`` vectors: each tower
takes its own (TextEncoder.embedding_key), the refiner CLIP-G's. ``encode_sdxl`` gives
each tower its own prompt (the CLIPTextEncodeSDXL node's text_g and text_l).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from nodeflow.text.prompt_weights import WeightedTokens
from nodeflow.text.text_encoder import TextEncoder
from nodeflow.text.tokenizer import END_TOKEN, ClipTokenizer

PENULTIMATE = -2
OPEN_CLIP_PAD = 0  # OpenCLIP's tokenizer pads with 0 ("!")
#: Per-tower settings of SDXL's encoders (ComfyUI's SDXLClipModel / SDXLClipG).
TOWERS = {
    "clip_l": dict(pad_token=END_TOKEN, final_norm=False, projected_pooled=False, embedding_key="clip_l"),
    "clip_g": dict(pad_token=OPEN_CLIP_PAD, final_norm=False, projected_pooled=True, embedding_key="clip_g"),
}


def sd2_text_encoder(model: nn.Module, tokenizer: ClipTokenizer, device: torch.device,
                     dtype: torch.dtype) -> TextEncoder:
    """SD2.x: OpenCLIP ViT-H (a CLIPTextModelWithProjection), penultimate layer through the final
    norm, padded with 0, projected pooled output."""
    return TextEncoder(model, tokenizer, PENULTIMATE, device, dtype, pad_token=OPEN_CLIP_PAD,
                       final_norm=True, projected_pooled=True)


def sdxl_refiner_text_encoder(clip_g: nn.Module, tokenizer: ClipTokenizer, device: torch.device,
                              dtype: torch.dtype) -> TextEncoder:
    """The SDXL refiner: CLIP-G alone, as in SDXL."""
    return TextEncoder(clip_g, tokenizer, PENULTIMATE, device, dtype, **TOWERS["clip_g"])


def sdxl_text_encoder(clip_l: nn.Module, clip_g: nn.Module, tokenizer: ClipTokenizer,
                      device: torch.device, dtype: torch.dtype) -> DualTextEncoder:
    """SDXL: CLIP-L (CLIPTextModel) and CLIP-G (CLIPTextModelWithProjection)."""
    return DualTextEncoder(TextTowers(clip_l=clip_l, clip_g=clip_g), tokenizer, PENULTIMATE, device, dtype)


class TextTowers(nn.Module):
    """Text encoders side by side in one module, so that one LoRA patch list (PatchedModule over
    this module, parameters ``clip_l.*`` / ``clip_g.*``) covers them all. ``forward(tower=name,
    **inputs)`` runs one of them."""

    def __init__(self, **towers: nn.Module) -> None:
        super().__init__()
        for name, tower in towers.items():
            self.add_module(name, tower)

    def forward(self, tower: str, **inputs):
        return self.get_submodule(tower)(**inputs)

    @property
    def config(self):
        """The deepest tower's config (CLIP-G's for SDXL): its depth bounds CLIPSetLastLayer."""
        return max((module.config for module in self.children()), key=lambda config: config.num_hidden_layers)


class _TowerView:
    """One tower of a TextTowers, called through it (so the container's patches apply); every other
    attribute (config, get_input_embeddings, text_model ...) is the tower's own."""

    def __init__(self, owner: nn.Module, name: str) -> None:
        self.owner, self.name = owner, name

    def __call__(self, **inputs):
        return self.owner(tower=self.name, **inputs)

    def __getattr__(self, attribute: str):
        if attribute in ("owner", "name"):
            raise AttributeError(attribute)
        return getattr(getattr(self.owner, self.name), attribute)


@dataclass(frozen=True)
class DualTextEncoder:
    """SDXL's CLIP (see the module docstring). Immutable like TextEncoder: ``clone_with`` returns a
    copy sharing the weights (CLIPSetLastLayer: ``layer_idx``; LoRA: ``model``)."""

    model: nn.Module  # TextTowers(clip_l=..., clip_g=...), or a patched wrapper of one
    tokenizer: ClipTokenizer
    layer_idx: int | None = PENULTIMATE  # both towers'
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    patches: tuple = ()

    def clone_with(self, **changes) -> DualTextEncoder:
        return replace(self, **changes)

    def tower(self, name: str) -> TextEncoder:
        """One tower as a TextEncoder with its settings (``clip_l`` or ``clip_g``)."""
        return TextEncoder(_TowerView(self.model, name), self.tokenizer, self.layer_idx, self.device, self.dtype,
                           **TOWERS[name])

    @property
    def width(self) -> int:
        """D of the conditioning: the towers' widths added (768 + 1280 for real files)."""
        return sum(self.tower(name).width for name in TOWERS)

    @property
    def num_layers(self) -> int:
        return max(self.tower(name).num_layers for name in TOWERS)

    def windows(self, text: str, embeddings=None) -> dict[str, list[WeightedTokens]]:
        """Each tower's 77-token windows of ``text`` (``{"clip_l": ..., "clip_g": ...}``)."""
        return {name: self.tower(name).windows(text, embeddings) for name in TOWERS}

    @torch.no_grad()
    def encode(self, text: str, embeddings=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond (1, 77 k, D_l + D_g), pooled (1, P_g)) in float32."""
        return self.encode_windows(self.windows(text, embeddings))

    @torch.no_grad()
    def encode_sdxl(self, text_g: str, text_l: str, embeddings=None) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIPTextEncodeSDXL's encoding: ``text_g`` through CLIP-G, ``text_l`` through CLIP-L. When
        one prompt needs more 77-token windows than the other, the shorter gets windows of the empty
        prompt (each tower's, with its pad token) until both have as many (ComfyUI's node does so)."""
        windows_g = self.tower("clip_g").windows(text_g, embeddings)
        windows_l = self.tower("clip_l").windows(text_l, embeddings)
        empty_g, empty_l = self.tower("clip_g").windows(""), self.tower("clip_l").windows("")
        windows_l += empty_l * (len(windows_g) - len(windows_l))
        windows_g += empty_g * (len(windows_l) - len(windows_g))
        return self.encode_windows({"clip_l": windows_l, "clip_g": windows_g})

    @torch.no_grad()
    def encode_windows(self, token_windows: dict[str, list[WeightedTokens]]) -> tuple[torch.Tensor, torch.Tensor]:
        cond_l, _ = self.tower("clip_l").encode_windows(token_windows["clip_l"])  # (1, 77 k, D_l)
        cond_g, pooled = self.tower("clip_g").encode_windows(token_windows["clip_g"])  # (1, 77 k', D_g)
        tokens = min(cond_l.shape[1], cond_g.shape[1])  # k != k' only if an embedding differs per tower
        return torch.cat([cond_l[:, :tokens], cond_g[:, :tokens]], dim=-1), pooled  # (1, 77 k, D_l + D_g)
