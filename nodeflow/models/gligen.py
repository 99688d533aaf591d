"""GLIGEN's grounding modules (Li et al. 2023, "GLIGEN: Open-Set Grounded Text-to-Image
Generation"), the text-box model (gligen_sd14_textbox_pruned) for SD1.x U-Nets.

The position net turns each box's phrase (its pooled CLIP text embedding) and the box itself
(x0, y0, x1, y1 as fractions of the image, as Fourier features: sin and cos of the coordinates at
8 frequencies 100^(k/8), section 3.2) into one grounding token; up to 30 boxes, the unused slots
replaced by learned null features:

    e = mask * [text ; fourier(box)] + (1 - mask) * [null_text ; null_box];  token = MLP(e)

A gated self-attention block (section 3.3, equation 8) runs inside each transformer block of the
U-Net, after its self-attention, on the visual tokens v (B, N, C) joined with the projected
grounding tokens g:

    v = v + tanh(alpha_attn) * SelfAttn(LN([v ; linear(g)]))[:, :N]
    v = v + tanh(alpha_dense) * FF(LN(v))

Attribute names are the file's (``position_net.linears.N``, ``null_positive_feature``; per block
``fuser.linear``, ``fuser.attn.to_q`` ...); nodeflow.loading.gligen builds them from a file and
nodeflow.sampling.gligen runs them from the U-Net's hooks.
"""

from __future__ import annotations

import torch
from torch import nn

from nodeflow.models.attention import CrossAttention, FeedForward

MAX_OBJECTS = 30  # grounding tokens per image: the boxes, then null slots
FOURIER_FREQUENCIES = 8
FOURIER_TEMPERATURE = 100.0
HIDDEN = 512  # the position net's MLP width
SD1_KEY_DIM = 768  # grounding tokens of SD1.x's width: 8 heads per block, else 64 channels per head

#: where a gated block runs: ("input" | "middle" | "output", block index, transformer block index)
Location = tuple[str, int, int]


def fourier_features(boxes: torch.Tensor, frequencies: int = FOURIER_FREQUENCIES) -> torch.Tensor:
    """boxes (..., 4) -> (..., frequencies x 2 x 4): per frequency f_k = 100^(k / frequencies),
    sin(f_k box) then cos(f_k box)."""
    bands = FOURIER_TEMPERATURE ** (torch.arange(frequencies, dtype=boxes.dtype, device=boxes.device) / frequencies)
    angles = boxes[..., None, :] * bands[:, None]  # (..., F, 4)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (..., F * 8)


class PositionNet(nn.Module):
    """Grounding tokens from phrase embeddings and boxes (keys ``linears.{0,2,4}``, ``null_*``)."""

    def __init__(self, in_dim: int, out_dim: int, frequencies: int = FOURIER_FREQUENCIES) -> None:
        super().__init__()
        self.frequencies = frequencies
        position_dim = frequencies * 2 * 4
        self.linears = nn.Sequential(nn.Linear(in_dim + position_dim, HIDDEN), nn.SiLU(),
                                     nn.Linear(HIDDEN, HIDDEN), nn.SiLU(), nn.Linear(HIDDEN, out_dim))
        self.null_positive_feature = nn.Parameter(torch.zeros(in_dim))
        self.null_position_feature = nn.Parameter(torch.zeros(position_dim))

    def forward(self, boxes: torch.Tensor, masks: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """boxes (B, n, 4) in 0..1, masks (B, n) 1 for a box, embeddings (B, n, in_dim) -> (B, n, out_dim)."""
        masks = masks[..., None]  # (B, n, 1)
        position = fourier_features(boxes, self.frequencies)  # (B, n, F * 8)
        position = position * masks + (1 - masks) * self.null_position_feature.to(position)
        embeddings = embeddings * masks + (1 - masks) * self.null_positive_feature.to(embeddings)
        return self.linears(torch.cat([embeddings, position], dim=-1))


class GatedSelfAttention(nn.Module):
    """GLIGEN's gated self-attention over visual and grounding tokens (keys ``linear``, ``attn``,
    ``ff``, ``norm1``, ``norm2``, ``alpha_attn``, ``alpha_dense``)."""

    def __init__(self, query_dim: int, key_dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.linear = nn.Linear(key_dim, query_dim)
        self.attn = CrossAttention(query_dim, None, heads, dim_head)
        self.ff = FeedForward(query_dim)
        self.norm1 = nn.LayerNorm(query_dim)
        self.norm2 = nn.LayerNorm(query_dim)
        self.alpha_attn = nn.Parameter(torch.tensor(0.0))
        self.alpha_dense = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, objs: torch.Tensor) -> torch.Tensor:
        """x (B, N, C) visual tokens, objs (B, n, key_dim) grounding tokens -> (B, N, C)."""
        visual = x.shape[1]
        joined = torch.cat([x, self.linear(objs)], dim=1)  # (B, N + n, C)
        x = x + torch.tanh(self.alpha_attn) * self.attn(self.norm1(joined))[:, :visual]
        return x + torch.tanh(self.alpha_dense) * self.ff(self.norm2(x))


def fuser_heads(query_dim: int, key_dim: int) -> tuple[int, int]:
    """(heads, dim_head) of a gated block: the file does not say; SD1.x's blocks have 8 heads,
    others 64 channels per head (as ComfyUI reads them)."""
    if key_dim == SD1_KEY_DIM:
        return 8, query_dim // 8
    return max(1, query_dim // 64), min(64, query_dim)


class Gligen(nn.Module):
    """A position net and the gated blocks of the U-Net's transformer blocks (``locations``)."""

    def __init__(self, position_net: PositionNet, fusers: dict[Location, GatedSelfAttention]) -> None:
        super().__init__()
        self.position_net = position_net
        self.locations = tuple(fusers)
        self.fusers = nn.ModuleList(fusers.values())

    @property
    def text_dim(self) -> int:
        """The width of the phrase embeddings it reads (CLIP ViT-L's pooled output, 768, for SD1.x)."""
        return self.position_net.null_positive_feature.shape[0]

    def fuser_at(self, location: Location) -> GatedSelfAttention | None:
        """The gated block of the transformer block at ``location``, or None."""
        if location not in self.locations:
            return None
        return self.fusers[self.locations.index(location)]

    def grounding_tokens(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """embeddings (n, text_dim) and boxes (n, 4) as (x0, y0, x1, y1) fractions, n <= 30 ->
        (1, 30, key_dim): one token per box, the rest null."""
        count = embeddings.shape[0]
        if count > MAX_OBJECTS:
            raise ValueError(f"GLIGEN takes at most {MAX_OBJECTS} boxes per conditioning entry, got {count}")
        if embeddings.shape[-1] != self.text_dim:
            raise ValueError(f"GLIGEN phrase embeddings are {embeddings.shape[-1]} wide; this model reads "
                             f"{self.text_dim} (the pooled output of SD1.x's CLIP ViT-L)")
        parameter = self.position_net.null_positive_feature
        masks = torch.zeros(1, MAX_OBJECTS, dtype=parameter.dtype, device=parameter.device)
        masks[:, :count] = 1.0
        padded_boxes = torch.zeros(1, MAX_OBJECTS, 4, dtype=parameter.dtype, device=parameter.device)
        padded_boxes[0, :count] = boxes.to(padded_boxes)
        padded = torch.zeros(1, MAX_OBJECTS, self.text_dim, dtype=parameter.dtype, device=parameter.device)
        padded[0, :count] = embeddings.to(padded)
        return self.position_net(padded_boxes, masks, padded)  # (1, 30, key_dim)
