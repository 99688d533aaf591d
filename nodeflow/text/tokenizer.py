"""CLIP's byte-level BPE tokenizer (Radford et al. 2021), as Stable Diffusion uses it.

Text is normalised (Unicode NFC, whitespace runs to one space) and lower-cased, as the
tokenizer of transformers (and so ComfyUI without ftfy) does; HTML entities are left as they
are (OpenAI's original, with ftfy, would unescape them). Then it is split by CLIP's pattern into words,
numbers (one digit each) and punctuation runs; each word's UTF-8 bytes map to printable symbols
(GPT-2's table) and are merged pair by pair in merge-rank order, the last symbol carrying
``</w>``. Ids come from ``assets/clip_tokenizer/vocab.json``; 49406 starts and 49407 ends a text.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from pathlib import Path

import regex

START_TOKEN = 49406
END_TOKEN = 49407
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def default_tokenizer_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "assets" / "clip_tokenizer"


def clean_text(text: str) -> str:
    """NFC, whitespace runs to one space, lower-case."""
    return regex.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).lower()


class ClipTokenizer:
    """Text -> CLIP token ids (without the start/end tokens; see ``encode``)."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        self.vocab = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_symbols = bytes_to_unicode()
        self._bpe = functools.lru_cache(maxsize=20000)(self._bpe_uncached)  # per instance

    @classmethod
    def from_dir(cls, folder: Path | str | None = None) -> ClipTokenizer:
        folder = Path(folder) if folder is not None else default_tokenizer_dir()
        try:
            vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
            lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
        except OSError as error:
            raise FileNotFoundError(f"CLIP tokenizer files missing in {folder}: {error}") from error
        merges = [tuple(line.split()) for line in lines[1:] if line.strip()]
        return cls(vocab, merges)

    def words(self, text: str) -> list[str]:
        """The pre-tokenised words of a cleaned text."""
        return PATTERN.findall(clean_text(text))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no start/end tokens)."""
        ids = []
        for word in self.words(text):
            symbols = "".join(self.byte_symbols[b] for b in word.encode("utf-8"))
            ids.extend(self.vocab[piece] for piece in self._bpe(symbols))
        return ids

    def _bpe_uncached(self, word: str) -> tuple[str, ...]:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(a, b) for a, b in zip(parts, parts[1:])}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)


def load_tokenizer(folder: Path | str | None = None) -> ClipTokenizer:
    """The tokenizer from ``assets/clip_tokenizer`` (or ``folder``)."""
    return ClipTokenizer.from_dir(folder)
