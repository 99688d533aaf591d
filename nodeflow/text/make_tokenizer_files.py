"""Regenerate assets/clip_tokenizer/{vocab.json,merges.txt} from OpenAI CLIP's BPE file.

The BPE file ships in the open_clip_torch wheel (MIT licence)::

    pip download open_clip_torch --no-deps -d /tmp/oc
    unzip -p /tmp/oc/open_clip_torch-*.whl open_clip/bpe_simple_vocab_16e6.txt.gz > /tmp/bpe.txt.gz
    python -m nodeflow.text.make_tokenizer_files /tmp/bpe.txt.gz assets/clip_tokenizer

The vocabulary is derived as CLIP's own tokenizer does: the 256 byte symbols, the same with
``</w>``, each merge's concatenation, then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from nodeflow.text.tokenizer import bytes_to_unicode

MERGE_COUNT = 49152 - 256 - 2


def make_files(bpe_gz: Path, out_dir: Path) -> None:
    lines = gzip.open(bpe_gz, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1:MERGE_COUNT + 1]  # the first line is a header
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(
        json.dumps(vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "merges.txt").write_text("\n".join(["#version: 0.2"] + merges) + "\n", encoding="utf-8")


if __name__ == "__main__":
    make_files(Path(sys.argv[1]), Path(sys.argv[2]))
