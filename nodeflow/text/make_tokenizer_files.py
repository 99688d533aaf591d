"""Regenerate assets/clip_tokenizer/{vocab.json,merges.txt} from OpenAI CLIP's BPE file.

The BPE file ships in the open_clip_torch wheel on PyPI (MIT licence, OpenAI CLIP)::

    pip download open_clip_torch --no-deps -d /tmp/oc
    unzip -p /tmp/oc/open_clip_torch-*.whl open_clip/bpe_simple_vocab_16e6.txt.gz > /tmp/bpe.txt.gz
    python -m nodeflow.text.make_tokenizer_files /tmp/bpe.txt.gz assets/clip_tokenizer

The vocabulary is derived as CLIP's own tokenizer does: the 256 byte symbols, the same with
``</w>``, each merge's two parts joined, then ``<|startoftext|>`` (49406) and ``<|endoftext|>``
(49407): 49,408 tokens. The output is byte-for-byte reproducible (see the checksums in
tests/test_tokenizer.py).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from nodeflow.text.tokenizer import WORD_END, bytes_to_unicode

VOCAB_SIZE = 49408
MERGE_COUNT = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges of the file
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def merges_from_bpe_file(bpe_gz: Path) -> list[str]:
    """The merge lines CLIP uses ("a b" each); the file's first line is a header."""
    lines = gzip.open(bpe_gz, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1:MERGE_COUNT + 1]
    if len(merges) != MERGE_COUNT:
        raise ValueError(f"{bpe_gz}: expected at least {MERGE_COUNT} merges, found {len(merges)}")
    return merges


def vocab_from_merges(merges: list[str]) -> dict[str, int]:
    """Token -> id: byte symbols, byte symbols + ``</w>``, merged pairs, then the special tokens."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + WORD_END for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += SPECIAL_TOKENS
    return {token: index for index, token in enumerate(tokens)}


def render_vocab(vocab: dict[str, int]) -> str:
    """vocab.json's text (the layout transformers' files use)."""
    return json.dumps(vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_merges(merges: list[str]) -> str:
    """merges.txt's text: a version header, one merge per line."""
    return "\n".join(["#version: 0.2", *merges]) + "\n"


def make_files(bpe_gz: Path, out_dir: Path) -> None:
    """Write vocab.json and merges.txt into ``out_dir``."""
    merges = merges_from_bpe_file(bpe_gz)
    vocab = vocab_from_merges(merges)
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"{bpe_gz}: derived {len(vocab)} tokens, expected {VOCAB_SIZE}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_bytes(render_vocab(vocab).encode("utf-8"))
    (out_dir / "merges.txt").write_bytes(render_merges(merges).encode("utf-8"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m nodeflow.text.make_tokenizer_files BPE_TXT_GZ OUT_DIR")
    make_files(Path(sys.argv[1]), Path(sys.argv[2]))
