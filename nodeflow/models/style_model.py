"""The T2I-Adapter style model (Mou et al. 2023, "T2I-Adapter", section 3.3; TencentARC's
t2iadapter_style_sd14v1): a small transformer that reads a CLIP ViT-L/14 image's last hidden
state (B, 1 + N, 1024) together with T learned style tokens and gives T tokens in the text
encoder's space (B, T, 768), which are appended to the prompt's.

    x = LN_pre([h ; E_style]);  x = blocks(x);  out = LN_post(x[:, -T:]) @ P

Each block is CLIP's residual attention block (pre-LayerNorm multi-head self-attention, then an
MLP of 4x width with QuickGELU). Attribute names are the file's (``style_embedding``,
``transformer_layes.N.attn.in_proj_weight``, ``proj`` ...), so it loads strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class StyleAdapterConfig:
    width: int = 1024  # the CLIP image tower's width
    context_dim: int = 768  # the text encoder's width
    layers: int = 3
    tokens: int = 8
    heads: int = 8  # not in the file's shapes; the released model's (and ComfyUI's fixed) value


class QuickGELU(nn.Module):
    """x sigmoid(1.702 x), OpenAI CLIP's GELU approximation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """CLIP's block: x + attn(ln_1(x)), then + mlp(ln_2(x)); keys ``attn.in_proj_*``, ``mlp.c_fc``..."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class StyleAdapter(nn.Module):
    """CLIP image tokens (B, 1 + N, width) -> style tokens (B, tokens, context_dim)."""

    def __init__(self, config: StyleAdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.style_embedding = nn.Parameter(torch.empty(1, config.tokens, config.width))
        self.ln_pre = nn.LayerNorm(config.width)
        self.transformer_layes = nn.Sequential(*(ResidualAttentionBlock(config.width, config.heads)
                                                 for _ in range(config.layers)))
        self.ln_post = nn.LayerNorm(config.width)
        self.proj = nn.Parameter(torch.empty(config.width, config.context_dim))

    @property
    def device(self) -> torch.device:
        return self.proj.device

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        style = self.style_embedding.expand(hidden.shape[0], -1, -1).to(hidden)  # (B, T, width)
        x = self.ln_pre(torch.cat([hidden, style], dim=1))  # (B, 1 + N + T, width)
        x = self.transformer_layes(x)
        return self.ln_post(x[:, -self.config.tokens:]) @ self.proj  # (B, T, context_dim)
