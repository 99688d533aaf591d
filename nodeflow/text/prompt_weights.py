"""Prompt emphasis and the 77-token windows of SD's CLIP, with ComfyUI's CLIPTextEncode semantics.

Emphasis (ComfyUI's rules, which differ from A1111's in places):

- ``(words)`` multiplies the weight of ``words`` by 1.1; groups nest: ``((words))`` gives 1.21.
- ``(words:1.3)`` sets the weight to 1.3, whatever the enclosing groups gave (ComfyUI's weights are
  absolute: ``((words:1.3))`` is 1.3 and ``((words):1.3)`` is 1.3 * 1.1). The weight is what
  follows the group's last ``:``, read like Python's ``float``; if that fails, the colon is text.
- ``\\(`` and ``\\)`` are literal parentheses. Unbalanced parentheses are kept as text the way
  ComfyUI's scanner leaves them.
- ``[words]`` is plain text (A1111's de-emphasis is not part of ComfyUI's syntax).
- A word ``embedding:name`` (textual inversion) stands for the vectors of the embedding file
  ``name`` (see ``nodeflow.loading.embeddings``), with the weight of its segment. Trailing
  punctuation that is not part of a file name (``embedding:name,``) is read as text.

Windows (ComfyUI's packing): each word (text split at spaces) is a group of tokens, an embedding a
group of vectors; groups fill windows of 75 tokens, each wrapped as [49406] + ids + [49407] and
padded with 49407 to 77. A group of fewer than 8 tokens that does not fit in the current window
moves whole to the next one; longer groups are cut at the window's end. An empty prompt gives one
window [49406, 49407 x 76]. A token is an id (int) or, for embeddings, a vector (torch.Tensor).
"""

from __future__ import annotations

from typing import Any, Protocol

from nodeflow.errors import NodeflowError
from nodeflow.text.tokenizer import END_TOKEN, START_TOKEN

WINDOW = 77  # tokens per CLIP pass, start and end included
EMPHASIS = 1.1  # factor of one level of parentheses
MAX_NESTING = 64  # levels of parentheses read (1.1^64 is 445: far beyond any useful emphasis)
SPLIT_WORD_TOKENS = 8  # token groups this long may be cut across windows
_ESCAPED = {"\\(": "\0\2", "\\)": "\0\1"}  # placeholders no prompt contains
EMBEDDING_PREFIX = "embedding:"

WeightedText = list[tuple[str, float]]
WeightedTokens = list[tuple[Any, float]]  # (token id, or an embedding's vector (D,), weight)


class PromptError(NodeflowError, ValueError):
    """A prompt that cannot be encoded (unsupported syntax)."""


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


def parse_weights(prompt: str) -> WeightedText:
    """Split ``prompt`` into (text, weight) segments, in order; escapes are resolved. Parentheses
    may nest ``MAX_NESTING`` deep (each level is a pass over its text: the work stays linear in the
    prompt's length); deeper is a PromptError."""
    for escape, placeholder in _ESCAPED.items():
        prompt = prompt.replace(escape, placeholder)
    depth = _deepest_nesting(prompt)
    if depth > MAX_NESTING:
        raise PromptError(f"the prompt nests parentheses {depth} deep; at most {MAX_NESTING} levels are read")
    return [(_unescape(text), weight) for text, weight in _weigh(prompt, 1.0)]


def _deepest_nesting(text: str) -> int:
    deepest = depth = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


def _weigh(text: str, weight: float) -> WeightedText:
    segments: WeightedText = []
    for part in _top_level_parts(text):
        if len(part) < 2 or not (part.startswith("(") and part.endswith(")")):
            segments.append((part, weight))
            continue
        inner, inner_weight = part[1:-1], weight * EMPHASIS
        colon = inner.rfind(":")
        if colon > 0:
            try:
                inner, inner_weight = inner[:colon], float(inner[colon + 1:])
            except ValueError:
                pass  # not a number: the colon is text
        segments += _weigh(inner, inner_weight)
    return segments


def _top_level_parts(text: str) -> list[str]:
    """Cut ``text`` before each top-level "(" and after its matching ")". A ")" without its "("
    sends the depth below zero, after which nothing more is cut (ComfyUI's scanner does the same)."""
    parts, current, depth = [], "", 0
    for char in text:
        if char == "(" and depth == 0:
            if current:
                parts.append(current)
            current = ""
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        current += char
        if char == ")" and depth == 0:
            parts.append(current)
            current = ""
    if current:
        parts.append(current)
    return parts


def _unescape(text: str) -> str:
    for escape, placeholder in _ESCAPED.items():
        text = text.replace(placeholder, escape[1])
    return text


def weighted_token_groups(tokenizer: Tokenizer, prompt: str, embeddings=None) -> list[WeightedTokens]:
    """One list of (token, weight) per word or embedding (no start/end tokens). ``embeddings``:
    a callable name -> vectors (n, D) or None (``nodeflow.loading.embeddings.EmbeddingFinder``)."""
    groups = []
    for text, weight in parse_weights(prompt):
        for word in _words(text):
            if word.startswith(EMBEDDING_PREFIX):
                vectors, word = _embedding(word[len(EMBEDDING_PREFIX):], embeddings)
                groups.append([(vector, weight) for vector in vectors])
            if word:
                groups.append([(token, weight) for token in tokenizer.encode(word)])
    return [group for group in groups if group]


def _words(text: str) -> list[str]:
    """ComfyUI's words: the text split at spaces (line breaks count as spaces)."""
    return text.replace("\n", " ").split(" ")


def embedding_references(prompt: str) -> list[str]:
    """What follows ``embedding:`` in each embedding word of ``prompt`` (weights parsed away)."""
    return [word[len(EMBEDDING_PREFIX):] for text, _ in parse_weights(prompt) for word in _words(text)
            if word.startswith(EMBEDDING_PREFIX)]


def embedding_name(reference: str, exists) -> str | None:
    """The longest prefix of ``reference`` for which ``exists(name)``, cutting only trailing
    punctuation (``embedding:name,`` names ``name``); None when there is none."""
    name = reference
    while name:
        if exists(name):
            return name
        if name[-1].isalnum():
            return None
        name = name[:-1]
    return None


def _embedding(reference: str, embeddings) -> tuple[list, str]:
    """The vectors of ``embedding:reference`` and the text left over after the name."""
    if embeddings is None:
        raise PromptError(f"{EMBEDDING_PREFIX}{reference}: textual-inversion embeddings cannot be used here")
    name = embedding_name(reference, lambda candidate: embeddings(candidate) is not None)
    if name is not None:
        return list(embeddings(name)), reference[len(name):]
    folders = ", ".join(str(folder) for folder in getattr(embeddings, "folders", [])) or "none"
    available = ", ".join(embeddings.available()[:10]) if hasattr(embeddings, "available") else ""
    raise PromptError(f"embedding {reference!r} not found in the embeddings folders ({folders}); "
                      f"available: {available or 'none'}")


def weighted_tokens(tokenizer: Tokenizer, prompt: str) -> WeightedTokens:
    """(token id, weight) for every token of ``prompt`` (no start/end tokens)."""
    return [pair for group in weighted_token_groups(tokenizer, prompt) for pair in group]


def windows(groups: list[WeightedTokens], pad_token: int = END_TOKEN) -> list[WeightedTokens]:
    """Pack token groups into 77-token windows: [start] + up to 75 tokens + [end], padded.
    Start, end and padding carry weight 1."""
    capacity = WINDOW - 2
    pieces: list[WeightedTokens] = [[]]
    for group in groups:
        while group:
            room = capacity - len(pieces[-1])
            if len(group) <= room:
                pieces[-1] += group
                group = []
            elif len(group) >= SPLIT_WORD_TOKENS:  # long group: fill this window, go on in the next
                pieces[-1] += group[:room]
                group = group[room:]
                pieces.append([])
            else:  # short group: keep it whole in the next window
                pieces.append([])
    return [_wrap(piece, pad_token) for piece in pieces]


def _wrap(piece: WeightedTokens, pad_token: int) -> WeightedTokens:
    window = [(START_TOKEN, 1.0), *piece, (END_TOKEN, 1.0)]
    return window + [(pad_token, 1.0)] * (WINDOW - len(window))


def prompt_windows(tokenizer: Tokenizer, prompt: str, pad_token: int = END_TOKEN,
                   embeddings=None) -> list[WeightedTokens]:
    """The 77-token windows of ``prompt``, as CLIPTextEncode feeds them to the text encoder."""
    return windows(weighted_token_groups(tokenizer, prompt, embeddings), pad_token)


def chunks(tokens: WeightedTokens, pad_token: int = END_TOKEN) -> list[WeightedTokens]:
    """Windows of a flat token list, cut every 75 tokens (one group)."""
    return windows([tokens] if tokens else [], pad_token)
