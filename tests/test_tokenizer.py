"""Our CLIP tokenizer: the asset files' checksums and equality with transformers' CLIPTokenizer."""

import hashlib
import random

import pytest

from nodeflow.text.prompt_weights import chunks, parse_weights, weighted_tokens
from nodeflow.text.tokenizer import default_tokenizer_dir, load_tokenizer

CHECKSUMS = {  # shared/reference/clip-tokenizer.md
    "vocab.json": "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349",
    "merges.txt": "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
}


@pytest.fixture(scope="module")
def ours():
    return load_tokenizer()


@pytest.fixture(scope="module")
def reference():
    transformers = pytest.importorskip("transformers")
    folder = default_tokenizer_dir()
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


@pytest.mark.parametrize("name", sorted(CHECKSUMS))
def test_asset_checksums(name):
    data = (default_tokenizer_dir() / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == CHECKSUMS[name]


def test_known_ids(ours):
    assert ours.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert ours.vocab["<|startoftext|>"] == 49406 and ours.vocab["<|endoftext|>"] == 49407


def random_prompts(count: int, seed: int = 0):
    rng = random.Random(seed)
    words = ["a", "photo", "of", "cat", "masterpiece", "best quality", "8k", "ultra-detailed",
             "don't", "it's", "(red:1.2)", "portrait,", "café", "naïve", "über", "日本", "🙂", "42",
             "3.14", "&amp;", "hello!!", "WORLD", "x_y", "foo-bar", "...", "  ", "\n", "tab\t",
             "greg rutkowski", "artstation", "d'oh", "you'll", "we've", "i'm", "they're"]
    for _ in range(count):
        yield " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))


def test_matches_transformers_on_varied_prompts(ours, reference):
    for prompt in list(random_prompts(300)) + ["", "A" * 300, "Hello, World! It's 2026."]:
        expected = reference(prompt, add_special_tokens=False)["input_ids"]
        assert ours.encode(prompt) == expected, prompt


def test_weights_parse_like_comfyui():
    assert parse_weights("a (red:1.5) cat") == [("a ", 1.0), ("red", 1.5), (" cat", 1.0)]
    assert parse_weights("(big (red))") == [("big ", pytest.approx(1.1)), ("red", pytest.approx(1.21))]
    assert parse_weights(r"\(literal\) (x:0.5)") == [("(literal) ", 1.0), ("x", 0.5)]
    assert parse_weights("unclosed (paren") == [("unclosed (paren", 1.0)]


def test_chunks_wrap_and_pad_with_end_token(ours):
    [chunk] = chunks(weighted_tokens(ours, ""))
    assert [t for t, _ in chunk] == [49406] + [49407] * 76
    long = chunks(weighted_tokens(ours, "cat " * 100))
    assert len(long) == 2 and all(len(c) == 77 for c in long)
    assert [t for t, _ in long[1][:27]] == [49406] + [2368] * 25 + [49407]
