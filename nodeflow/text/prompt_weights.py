"""Prompt emphasis as ComfyUI writes it: ``(words:1.3)`` sets a weight, ``(words)`` multiplies it
by 1.1, groups nest (weights multiply), ``\\(`` and ``\\)`` are literal parentheses.

Also the 75-token chunking of SD's CLIP: each chunk is wrapped as [49406] + ids + [49407] and
padded with 49407 to 77 tokens; longer prompts give several chunks whose embeddings are
concatenated (77 * k tokens).
"""

from __future__ import annotations

import re

from nodeflow.text.tokenizer import END_TOKEN, START_TOKEN

CHUNK_TOKENS = 75
EMPHASIS = 1.1
_WEIGHT_SUFFIX = re.compile(r"^(.*):\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*$", re.DOTALL)

WeightedText = list[tuple[str, float]]
WeightedTokens = list[tuple[int, float]]


def parse_weights(prompt: str, weight: float = 1.0) -> WeightedText:
    """Split ``prompt`` into (text, weight) segments."""
    segments: WeightedText = []
    text, i = [], 0
    while i < len(prompt):
        char = prompt[i]
        if char == "\\" and i + 1 < len(prompt) and prompt[i + 1] in "()":
            text.append(prompt[i + 1])
            i += 2
            continue
        if char == "(":
            end = _matching_parenthesis(prompt, i)
            if end is not None:
                if text:
                    segments.append(("".join(text), weight))
                    text = []
                inner = prompt[i + 1:end]
                match = _WEIGHT_SUFFIX.match(inner)
                if match:
                    segments += parse_weights(match.group(1), weight * float(match.group(2)))
                else:
                    segments += parse_weights(inner, weight * EMPHASIS)
                i = end + 1
                continue
        text.append(char)
        i += 1
    if text:
        segments.append(("".join(text), weight))
    return [(t, w) for t, w in segments if t]


def _matching_parenthesis(prompt: str, start: int) -> int | None:
    depth, i = 0, start
    while i < len(prompt):
        if prompt[i] == "\\":
            i += 2
            continue
        if prompt[i] == "(":
            depth += 1
        elif prompt[i] == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def weighted_tokens(tokenizer, prompt: str) -> WeightedTokens:
    """(token id, weight) for every token of ``prompt`` (no start/end tokens)."""
    return [(token, weight) for text, weight in parse_weights(prompt)
            for token in tokenizer.encode(text)]


def chunks(tokens: WeightedTokens, pad_token: int = END_TOKEN) -> list[WeightedTokens]:
    """75-token chunks, each wrapped in start/end tokens and padded to 77 (weight 1 outside the
    prompt's own tokens). An empty prompt gives one chunk."""
    pieces = [tokens[i:i + CHUNK_TOKENS] for i in range(0, len(tokens), CHUNK_TOKENS)] or [[]]
    wrapped = []
    for piece in pieces:
        chunk = [(START_TOKEN, 1.0)] + piece + [(END_TOKEN, 1.0)]
        chunk += [(pad_token, 1.0)] * (CHUNK_TOKENS + 2 - len(chunk))
        wrapped.append(chunk)
    return wrapped
