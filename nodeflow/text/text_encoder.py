"""The CLIP socket value: a CLIP text model (nodeflow.models.clip_text, transformers' names and
outputs), our tokenizer and the clip-skip layer.

SD1.x conditions on CLIP's hidden states for 77-token windows ([49406] + ids + [49407], padded
with 49407; causal mask only, no padding mask), taken after the final layer norm. ``layer_idx``
follows ComfyUI's CLIPSetLastLayer: None (or any index beyond the depth) means the last layer;
-1 is the last layer, -2 the penultimate ("clip skip 2"), ...; 0, 1, ... count from the first.
Intermediate layers also go through the final layer norm, as in ComfyUI and A1111.

The other families' encoders are the same class with ComfyUI's settings for them
(nodeflow.text.families): ``pad_token`` (OpenCLIP towers pad with 0), ``final_norm`` (whether a
chosen layer goes through the final layer norm: SDXL's do not; beyond the depth, or with
``layer_idx`` None, it is always the normalised last layer, ComfyUI's "last") and
``projected_pooled`` (the pooled output times ``text_projection``: a CLIPTextModelWithProjection's
``text_embeds``, for SD2 and SDXL's CLIP-G) and ``embedding_key`` (which tensor of an SDXL
textual-inversion file, ``clip_l`` or ``clip_g``, the encoder takes).

Textual-inversion embeddings (``embedding:name`` in a prompt) put their vectors in place of token
embeddings, at their positions in the window, before the position embeddings are added.

Prompt weights act on the output, relative to the empty prompt's encoding (ComfyUI's rule): for
every token position whose weight w is not 1, z = z_empty + (z - z_empty) * w, where z_empty is the
encoding of [49406, 49407, 49407 ...] at the same position. Windows of long prompts are encoded in
one batch and concatenated along the sequence axis; the pooled output is the first window's
(the final state at its first end token).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from nodeflow.models.clip_text import ClipTextConfig, ClipTextModel, ClipTextModelWithProjection
from nodeflow.models.meta import load_on_meta
from nodeflow.runtime.threads import cpu_threads, network_work, threads_for
from nodeflow.text.prompt_weights import WINDOW, PromptError, WeightedTokens, prompt_windows, windows
from nodeflow.text.tokenizer import END_TOKEN, ClipTokenizer

IGNORED_KEYS = ("position_ids",)  # a constant buffer some files carry; rebuilt, never loaded
HEAD_DIM = 64  # CLIP's text towers all use 64-wide heads (ViT-L 12, ViT-H 16, ViT-bigG 20 heads)


@dataclass(frozen=True)
class TextEncoder:
    """Encodes prompts into CONDITIONING tensors. Immutable: ``clone_with`` returns a copy that
    shares the model's weights (CLIPSetLastLayer, LoRA)."""

    model: torch.nn.Module  # a ClipTextModel(WithProjection), transformers' or a wrapper with the same call
    tokenizer: ClipTokenizer
    layer_idx: int | None = None  # None: last layer; -1 last, -2 penultimate ...
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    patches: tuple = ()
    pad_token: int = END_TOKEN
    final_norm: bool = True  # the chosen layer through the final layer norm (ComfyUI's layer_norm_hidden_state)
    projected_pooled: bool = False  # pooled = text_embeds (x @ text_projection), not pooler_output
    embedding_key: str | None = None  # the vectors it takes from SDXL-style embedding files (clip_l, clip_g)

    def clone_with(self, **changes) -> TextEncoder:
        """A copy with some fields changed (``layer_idx=-2``, ``model=patched`` ...)."""
        return replace(self, **changes)

    @property
    def width(self) -> int:
        """D, the width of the hidden states."""
        return self.model.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    def windows(self, text: str, embeddings=None) -> list[WeightedTokens]:
        """The (token, weight) windows of ``text``, 77 each (``embeddings``: see prompt_weights)."""
        return prompt_windows(self.tokenizer, text, self.pad_token, embeddings_for(embeddings, self.embedding_key))

    @torch.no_grad()
    def encode(self, text: str, embeddings=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond (1, 77 k, D), pooled (1, D)) in float32, on the encoder's device."""
        return self.encode_windows(self.windows(text, embeddings))

    @torch.no_grad()
    def encode_windows(self, token_windows: list[WeightedTokens]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode (token, weight) windows; see the module docstring for the weighting rule."""
        k = len(token_windows)
        ids, vectors = self._ids_and_vectors(token_windows)
        weights = torch.tensor([[w for _, w in window] for window in token_windows])  # (k, 77)
        weighted = bool((weights != 1.0).any())
        if weighted:
            ids.append([token for token, _ in windows([], self.pad_token)[0]])  # the empty prompt
        with cpu_threads(self._threads(len(ids) * WINDOW)):
            hidden, pooled = self.encode_ids(torch.tensor(ids, device=self.device), vectors)  # (k(+1), 77, D)
        hidden = hidden.float()
        if weighted:
            empty = hidden[k]  # (77, D)
            w = weights.to(hidden.device)[..., None]  # (k, 77, 1)
            moved = empty + (hidden[:k] - empty) * w  # (k, 77, D)
            hidden = torch.where(w != 1.0, moved, hidden[:k])  # weight 1: untouched, bit for bit
        cond = hidden.reshape(1, k * WINDOW, hidden.shape[-1])  # (1, 77 k, D)
        return cond, pooled[:1].float()

    def _threads(self, tokens: int) -> int:
        """CPU threads for encoding this many tokens (nodeflow.runtime.threads); on a GPU the
        count is left as it is."""
        if self.device.type != "cpu":
            return torch.get_num_threads()
        return threads_for(network_work(self.model, tokens))

    def _ids_and_vectors(self, token_windows: list[WeightedTokens]) -> tuple[list[list[int]], dict]:
        """Token ids per window, embedding vectors standing in for id 0: {(window, position): vector}."""
        ids, vectors = [], {}
        for row, window in enumerate(token_windows):
            ids.append([])
            for position, (token, _) in enumerate(window):
                if isinstance(token, torch.Tensor):
                    if token.shape != (self.width,):
                        raise PromptError(f"an embedding's vectors are {tuple(token.shape)[-1]} wide, but this text "
                                          f"encoder's tokens are {self.width} (made for another model family?)")
                    vectors[(row, position)] = token
                    token = 0
                ids[-1].append(token)
        return ids, vectors

    def encode_ids(self, ids: torch.Tensor, vectors: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (N, 77, D) at ``layer_idx`` (after the final layer norm if ``final_norm``)
        and the pooled output (N, D or P): the last layer's normalised state at the first end token
        (times ``text_projection`` if ``projected_pooled``). ``vectors`` {(row, position): (D,)}
        replace the token embeddings at those places (textual inversion)."""
        index = hidden_state_index(self.layer_idx, self.num_layers)
        if index is None and not self.final_norm and _within_depth(self.layer_idx, self.num_layers):
            index = self.num_layers  # the last layer itself, not normalised (ComfyUI's "hidden" -1)
        with _token_vectors(self.model, vectors or {}):
            output = self.model(input_ids=ids, output_hidden_states=index is not None)
        pooled = output.text_embeds if self.projected_pooled else output.pooler_output
        if index is None:
            return output.last_hidden_state, pooled
        hidden = output.hidden_states[index]
        if self.final_norm:
            hidden = final_layer_norm(self.model, hidden)
        return hidden, pooled


def final_layer_norm(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The model's final LayerNorm applied to ``hidden``, with the weights the model runs with: a
    patched model (LoRA, CLIPMerge*; nodeflow.loading.lora.PatchedModule) substitutes its own."""
    inner = getattr(model, "text_model", model)  # a projected model nests the transformer
    run = getattr(model, "run_submodule", None)
    if run is None:
        return inner.final_layer_norm(hidden)
    return run("text_model.final_layer_norm" if inner is not model else "final_layer_norm", hidden)


def embeddings_for(embeddings, key: str | None):
    """The textual-inversion lookup for an encoder that takes ``key``'s vectors (``clip_l``,
    ``clip_g``) from files holding several: ``embeddings.for_encoder(key)`` when the lookup has it
    (nodeflow.loading.embeddings.EmbeddingFinder), else the lookup itself (ComfyUI's tokenizers
    read their ``embedding_key`` the same way)."""
    if key is None or not hasattr(embeddings, "for_encoder"):
        return embeddings
    return embeddings.for_encoder(key)


def _within_depth(layer_idx: int | None, num_layers: int) -> bool:
    """Whether ComfyUI takes a chosen layer ("hidden") rather than the normalised last ("last")."""
    return layer_idx is not None and abs(layer_idx) <= num_layers


@contextmanager
def _token_vectors(model: torch.nn.Module, vectors: dict):
    """While active, the token embedding's output holds ``vectors`` at their (row, position).
    A forward hook on the shared model, removed on exit: encodes of one model must not overlap
    (the executor runs one node at a time)."""
    if not vectors:
        yield
        return
    embedding = model.get_input_embeddings()

    def replace_rows(module, inputs, output):
        output = output.clone()
        for (row, position), vector in vectors.items():
            output[row, position] = vector.to(device=output.device, dtype=output.dtype)
        return output

    handle = embedding.register_forward_hook(replace_rows)
    try:
        yield
    finally:
        handle.remove()


def hidden_state_index(layer_idx: int | None, num_layers: int) -> int | None:
    """Index into transformers' ``hidden_states`` (embeddings first, then each layer's output) for
    ComfyUI's ``layer_idx``; None means the last layer's normalised output."""
    if layer_idx is None or abs(layer_idx) > num_layers:
        return None  # ComfyUI falls back to the last layer
    layer = layer_idx % num_layers if layer_idx < 0 else layer_idx  # 0-based layer whose output
    if layer >= num_layers:
        raise ValueError(f"layer_idx {layer_idx} is beyond the text encoder's {num_layers} layers")
    return None if layer == num_layers - 1 else layer + 1


def clip_config_from_state_dict(sd: dict[str, torch.Tensor], num_heads: int | None = None,
                                hidden_act: str = "quick_gelu") -> ClipTextConfig:
    """A ClipTextConfig from tensor shapes (keys without ``text_model.``). Heads: hidden / 64
    unless given (they cannot be read from shapes)."""
    try:
        vocab, hidden = sd["embeddings.token_embedding.weight"].shape
        positions = sd["embeddings.position_embedding.weight"].shape[0]
        intermediate = sd["encoder.layers.0.mlp.fc1.weight"].shape[0]
    except KeyError as error:
        raise KeyError(f"not a CLIP text encoder state dict: missing {error}; "
                       f"found keys like {sorted(sd)[:5]}") from error
    layers = {int(m.group(1)) for key in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", key))}
    return ClipTextConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=len(layers), num_attention_heads=num_heads or max(1, hidden // HEAD_DIM),
        max_position_embeddings=positions, hidden_act=hidden_act, eos_token_id=END_TOKEN,
    )


def text_encoder_from_state_dict(sd: dict[str, torch.Tensor], tokenizer: ClipTokenizer, *,
                                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                                 num_heads: int | None = None) -> TextEncoder:
    """Build the CLIPTextModel on the meta device and take the tensors (strict, no copy beyond the
    device/dtype move). Keys may carry ``text_model.`` or not; ``position_ids`` is ignored."""
    model = clip_model_from_state_dict(sd, device=device, dtype=dtype, num_heads=num_heads)
    return TextEncoder(model, tokenizer, None, torch.device(device), dtype)


def clip_model_from_state_dict(sd: dict[str, torch.Tensor], *, device: torch.device | str = "cpu",
                               dtype: torch.dtype = torch.float32, num_heads: int | None = None,
                               hidden_act: str = "quick_gelu") -> torch.nn.Module:
    """A CLIP text model holding the tensors of ``sd`` (transformers' key names, with or without
    ``text_model.``; ``position_ids`` ignored), built on the meta device and loaded strictly: a
    ClipTextModelWithProjection when ``sd`` has ``text_projection.weight`` (P, D), else a
    ClipTextModel. ``hidden_act``: quick_gelu for OpenAI's CLIP (SD1, SDXL's CLIP-L), gelu for
    OpenCLIP's towers."""
    projection = sd.get("text_projection.weight")
    plain = {k.removeprefix("text_model."): v for k, v in sd.items()
             if not k.endswith(IGNORED_KEYS) and k != "text_projection.weight"}
    config = clip_config_from_state_dict(plain, num_heads, hidden_act)
    if projection is None:
        return load_on_meta(lambda: ClipTextModel(config), plain, device=device, dtype=dtype)
    config.projection_dim = projection.shape[0]
    tensors = {"text_model." + k: v for k, v in plain.items()} | {"text_projection.weight": projection}
    return load_on_meta(lambda: ClipTextModelWithProjection(config), tensors, device=device, dtype=dtype)
