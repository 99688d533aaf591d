"""CLIP's text transformer (OpenAI CLIP ViT-L, OpenCLIP ViT-H and ViT-bigG), with transformers'
module names, so that checkpoints, LoRA keys and saved files use the same names as transformers'
``CLIPTextModel`` and ``CLIPTextModelWithProjection``.

Our own definition rather than transformers' classes: importing transformers' modelling code
pulls in torch._dynamo, torch.distributed and more (about 2 s, most of the default workflow's
start-up), for a network of a few lines. tests/test_text_encoder.py and the single-file parity
tests hold it equal to transformers' on the same weights.

    embeddings      token_embedding (V, D), position_embedding (T, D)
    encoder.layers  N x [x + attn(layer_norm1(x)) causal; x + mlp(layer_norm2(x))]
    final_layer_norm
    pooled          the final state at the first end token; ``text_projection`` (P, D) on top

``ClipTextModel`` has these modules at the top (transformers 5's CLIPTextModel layout);
``ClipTextModelWithProjection`` nests them under ``text_model`` next to ``text_projection``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nodeflow.models.linear import Linear

ACTIVATIONS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),  # OpenAI's CLIP
    "gelu": F.gelu,  # OpenCLIP's towers
}


@dataclass
class ClipTextConfig:
    """The shapes and settings of a text tower (names as transformers' CLIPTextConfig)."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 49407
    projection_dim: int | None = None  # the text_projection's output width, when there is one

    def __post_init__(self) -> None:
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unknown CLIP activation {self.hidden_act!r}; known: {sorted(ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"CLIP width {self.hidden_size} is not a multiple of {self.num_attention_heads} heads")


@dataclass
class ClipTextOutput:
    """What a forward returns (the fields of transformers' outputs that nodeflow reads)."""

    last_hidden_state: torch.Tensor  # (N, T, D), after the final layer norm
    pooler_output: torch.Tensor  # (N, D)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings, then each layer's output
    text_embeds: torch.Tensor | None = None  # (N, P): pooled times text_projection


def _embedding(rows: int, width: int) -> nn.Embedding:
    """An embedding table, random (std 0.02) unless built on the meta device: there torch's own
    random init would import torch's meta kernels (about 1 s) for weights a file replaces."""
    weight = torch.empty(rows, width)
    if not weight.is_meta:
        nn.init.normal_(weight, std=0.02)
    return nn.Embedding(rows, width, _weight=weight)


class ClipEmbeddings(nn.Module):
    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.token_embedding = _embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = _embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.token_embedding(input_ids) + self.position_embedding(positions)[None]


class ClipSelfAttention(nn.Module):
    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.q_proj, self.k_proj = Linear(width, width), Linear(width, width)
        self.v_proj, self.out_proj = Linear(width, width), Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape

        def heads(projection: nn.Linear) -> torch.Tensor:
            return projection(x).view(n, t, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj), heads(self.k_proj), heads(self.v_proj),
                                             is_causal=True)
        return self.out_proj(out.transpose(1, 2).reshape(n, t, d))


class ClipMlp(nn.Module):
    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.activation = ACTIVATIONS[config.hidden_act]
        self.fc1 = Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class ClipEncoderLayer(nn.Module):
    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.self_attn = ClipSelfAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ClipMlp(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEncoder(nn.Module):
    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ClipEncoderLayer(config) for _ in range(config.num_hidden_layers))


class ClipTextModel(nn.Module):
    """The text transformer: ``model(input_ids=ids, output_hidden_states=...)``."""

    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = ClipEmbeddings(config)
        self.encoder = ClipEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.token_embedding

    def forward(self, input_ids: torch.Tensor, output_hidden_states: bool = False) -> ClipTextOutput:
        x = self.embeddings(input_ids)
        states = [x]
        for layer in self.encoder.layers:
            x = layer(x)
            states.append(x)
        last = self.final_layer_norm(x)
        end = (input_ids == self.config.eos_token_id).int().argmax(dim=-1)  # the first end token
        pooled = last[torch.arange(last.shape[0], device=last.device), end]
        return ClipTextOutput(last, pooled, tuple(states) if output_hidden_states else None)


class ClipTextModelWithProjection(nn.Module):
    """The text transformer under ``text_model`` and ``text_projection`` (P, D), no bias: the
    output's ``text_embeds`` are the pooled state projected (SD2's and SDXL's pooled output)."""

    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        if config.projection_dim is None:
            raise ValueError("a projected CLIP text model needs config.projection_dim")
        self.config = config
        self.text_model = ClipTextModel(config)
        self.text_projection = Linear(config.hidden_size, config.projection_dim, bias=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, output_hidden_states: bool = False) -> ClipTextOutput:
        output = self.text_model(input_ids, output_hidden_states)
        output.text_embeds = self.text_projection(output.pooler_output)
        return output
