"""CLIP's byte-level BPE tokenizer (Radford et al. 2021, "Learning Transferable Visual Models From
Natural Language Supervision"), as Stable Diffusion 1.x/2.x/XL use it.

The steps, as transformers' ``CLIPTokenizer`` (and so ComfyUI) perform them:

1. normalise: Unicode NFC, every whitespace run to one space, lower-case (HTML entities are left
   as they are; OpenAI's original also ran ftfy);
2. pre-tokenise with CLIP's pattern into words (letter runs), single digits and punctuation runs;
3. map each word's UTF-8 bytes to printable symbols (GPT-2's byte table), mark the last symbol of
   the word with ``</w>``, and merge adjacent pairs lowest merge-rank first (Sennrich et al. 2016,
   byte-pair encoding) until no ranked pair is left;
4. look the pieces up in ``vocab.json``. ``<|startoftext|>`` is 49406, ``<|endoftext|>`` 49407.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import regex

START_TOKEN = 49406  # <|startoftext|>
END_TOKEN = 49407  # <|endoftext|>
WORD_END = "</w>"
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")
WHITESPACE = regex.compile(r"\s+")
BPE_CACHE_SIZE = 50_000  # words remembered per tokenizer instance


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters: printable
    Latin-1 bytes map to themselves, the others to code points 256, 257, ... in byte order. The
    dict's order (printable bytes first) is the order of CLIP's first 256 token ids."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + i) for i, b in enumerate(others)})
    return table


BYTE_SYMBOLS: Mapping[int, str] = MappingProxyType(bytes_to_unicode())  # read-only


def default_tokenizer_dir() -> Path:
    """``assets/clip_tokenizer`` of the source tree."""
    return Path(__file__).resolve().parents[2] / "assets" / "clip_tokenizer"


def clean_text(text: str) -> str:
    """NFC, whitespace runs to one space, lower-case (transformers' CLIP normaliser). Lower-casing
    is per character as in the Rust normaliser: capital sigma is always "σ", never the final "ς"
    that Python's ``str.lower`` picks at a word's end."""
    return WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).replace("\u03a3", "\u03c3").lower()


class ClipTokenizer:
    """Text -> CLIP token ids. ``encode`` gives the bare ids, ``tokenize`` adds start and end."""

    def __init__(self, vocab: Mapping[str, int], merges: list[tuple[str, str]]) -> None:
        self.vocab = dict(vocab)
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self._cache: dict[str, tuple[str, ...]] = {}  # this instance's BPE results per word

    @classmethod
    def from_dir(cls, folder: Path | str | None = None) -> ClipTokenizer:
        """Read ``vocab.json`` and ``merges.txt`` (first line a ``#version`` header)."""
        folder = Path(folder) if folder is not None else default_tokenizer_dir()
        try:
            vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
            lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
        except (OSError, ValueError) as error:
            raise FileNotFoundError(f"CLIP tokenizer files missing or unreadable in {folder}: {error}") \
                from error
        merges = [_merge_pair(line, folder) for line in lines[1:] if line.strip()]
        return cls(vocab, merges)

    def words(self, text: str) -> list[str]:
        """The pre-tokenised words of ``text`` after normalisation."""
        return PATTERN.findall(clean_text(text))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without start and end tokens."""
        ids: list[int] = []
        for word in self.words(text):
            if word == "<|startoftext|>" or word == "<|endoftext|>":
                ids.append(self.vocab[word])
                continue
            symbols = "".join(BYTE_SYMBOLS[b] for b in word.encode("utf-8"))
            ids.extend(self.vocab[piece] for piece in self.bpe(symbols))
        return ids

    def tokenize(self, text: str) -> list[int]:
        """``[49406] + encode(text) + [49407]`` (no padding)."""
        return [START_TOKEN, *self.encode(text), END_TOKEN]

    def bpe(self, word: str) -> tuple[str, ...]:
        """The BPE pieces of one pre-tokenised word (already in byte symbols)."""
        pieces = self._cache.get(word)
        if pieces is None:
            pieces = self._merge(word)
            if len(self._cache) >= BPE_CACHE_SIZE:
                self._cache.clear()
            self._cache[word] = pieces
        return pieces

    def _merge(self, word: str) -> tuple[str, ...]:
        parts = [*word[:-1], word[-1] + WORD_END]
        while len(parts) > 1:
            best = min(zip(parts, parts[1:]), key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)


def _merge_pair(line: str, folder: Path) -> tuple[str, str]:
    pair = line.split()
    if len(pair) != 2:
        raise ValueError(f"{folder / 'merges.txt'}: bad merge line {line!r}")
    return pair[0], pair[1]


def load_tokenizer(assets_dir: Path | str | None = None) -> ClipTokenizer:
    """The tokenizer from ``assets/clip_tokenizer`` (or ``assets_dir``)."""
    return ClipTokenizer.from_dir(assets_dir)
