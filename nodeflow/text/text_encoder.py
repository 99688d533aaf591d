"""The CLIP socket value: a transformers CLIPTextModel plus our tokenizer and the clip-skip layer.

SD1.x conditions on the last layer's hidden states after the final layer norm, for 77 tokens
(padding with 49407, causal mask only, no padding mask). ``layer_idx`` -2 ("clip skip 2") takes
the penultimate layer's output, also through the final layer norm (as ComfyUI and A1111 do).
Weighted tokens move their embedding away from the empty prompt's:
z = z_empty + (z - z_empty) * weight, per token position (ComfyUI's rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch

from nodeflow.text.prompt_weights import chunks, weighted_tokens
from nodeflow.text.tokenizer import ClipTokenizer

IGNORED_KEYS = ("position_ids",)  # a constant buffer some files carry


@dataclass(frozen=True)
class TextEncoder:
    """Encodes prompts into CONDITIONING tensors. Immutable: ``clone_with`` returns a copy that
    shares the model's weights."""

    model: torch.nn.Module  # transformers CLIPTextModel
    tokenizer: ClipTokenizer
    layer_idx: int | None = None  # None or -1: last layer; -2: penultimate ...
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    patches: tuple = ()

    def clone_with(self, **changes) -> TextEncoder:
        return replace(self, **changes)

    @property
    def width(self) -> int:
        return self.model.config.hidden_size

    @torch.no_grad()
    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond (1, 77 k, D), pooled (1, D)), float32, on the encoder's device."""
        token_chunks = chunks(weighted_tokens(self.tokenizer, text))
        weighted = any(weight != 1.0 for chunk in token_chunks for _, weight in chunk)
        ids = [[token for token, _ in chunk] for chunk in token_chunks]
        if weighted:
            ids.append([token for token, _ in chunks([])[0]])  # the empty prompt, for weights
        hidden, pooled = self.encode_ids(torch.tensor(ids, device=self.device))  # (k(+1), 77, D)
        if weighted:
            empty = hidden[-1]  # (77, D)
            weights = torch.tensor([[w for _, w in chunk] for chunk in token_chunks],
                                   device=hidden.device, dtype=hidden.dtype)[..., None]  # (k, 77, 1)
            hidden = empty + (hidden[:-1] - empty) * weights
        cond = hidden.reshape(1, -1, hidden.shape[-1])  # (1, 77 k, D)
        return cond.float(), pooled[:1].float()

    def encode_ids(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (N, 77, D) at ``layer_idx`` after the final layer norm, and the pooled
        output (N, D) (the final state at the end token)."""
        output = self.model(input_ids=ids, output_hidden_states=self.layer_idx not in (None, -1))
        if self.layer_idx in (None, -1):
            hidden = output.last_hidden_state
        else:
            final_norm = _final_layer_norm(self.model)
            hidden = final_norm(output.hidden_states[self.layer_idx])
        return hidden, output.pooler_output


def _final_layer_norm(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, "text_model", model)
    return inner.final_layer_norm


def clip_config_from_state_dict(sd: dict[str, torch.Tensor], num_heads: int | None = None,
                                hidden_act: str = "quick_gelu"):
    """A CLIPTextConfig from tensor shapes (keys without ``text_model.``). Heads: hidden / 64."""
    from transformers import CLIPTextConfig

    vocab, hidden = sd["embeddings.token_embedding.weight"].shape
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    return CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=sd["encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=len(layers),
        num_attention_heads=num_heads or max(1, hidden // 64),
        max_position_embeddings=sd["embeddings.position_embedding.weight"].shape[0],
        hidden_act=hidden_act,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def text_encoder_from_state_dict(sd: dict[str, torch.Tensor], tokenizer: ClipTokenizer, *,
                                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                                 num_heads: int | None = None) -> TextEncoder:
    """Build the CLIPTextModel on the meta device and take the tensors (strict). Keys may carry
    ``text_model.`` or not; ``position_ids`` is ignored."""
    from transformers import CLIPTextModel

    plain = {k.removeprefix("text_model."): v for k, v in sd.items() if not k.endswith(IGNORED_KEYS)}
    config = clip_config_from_state_dict(plain, num_heads)
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = CLIPTextModel(config)
    prefix = "text_model." if any(k.startswith("text_model.") for k in model.state_dict()) else ""
    tensors = {prefix + k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
               for k, v in plain.items()}
    model.load_state_dict(tensors, strict=True, assign=True)
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta and name.endswith("position_ids"):  # non-persistent: rebuild it
            owner = model.get_submodule(name.rsplit(".", 1)[0])
            owner.register_buffer("position_ids", torch.arange(buffer.shape[-1], device=device)[None],
                                  persistent=False)
    return TextEncoder(model.eval().requires_grad_(False), tokenizer, None, torch.device(device), dtype)
