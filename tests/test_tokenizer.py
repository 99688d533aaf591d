"""Our CLIP tokenizer: the asset files' checksums, ids equal to transformers' CLIPTokenizer built
from the same files, ComfyUI's emphasis syntax and 77-token windows."""

import hashlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeflow.text.make_tokenizer_files import render_merges, render_vocab, vocab_from_merges
from nodeflow.text.prompt_weights import (PromptError, chunks, parse_weights, prompt_windows,
                                          weighted_tokens)
from nodeflow.text.tokenizer import ClipTokenizer, default_tokenizer_dir, load_tokenizer

CHECKSUMS = {  # shared/reference/clip-tokenizer.md
    "vocab.json": "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349",
    "merges.txt": "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
}
CAT, RED = 2368, 736  # "cat</w>", "red</w>"


@pytest.fixture(scope="module")
def ours():
    return load_tokenizer()


@pytest.fixture(scope="module")
def reference():
    transformers = pytest.importorskip("transformers")
    folder = default_tokenizer_dir()
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", sorted(CHECKSUMS))
def test_asset_checksums(name):
    assert sha256((default_tokenizer_dir() / name).read_bytes()) == CHECKSUMS[name]


def test_generator_derives_the_shipped_files_from_the_merges():
    """make_tokenizer_files' derivation, run on the shipped merges, writes both files exactly."""
    lines = (default_tokenizer_dir() / "merges.txt").read_text(encoding="utf-8").split("\n")
    merges = lines[1:-1]  # header, ..., final newline
    assert len(merges) == 48894
    assert sha256(render_merges(merges).encode("utf-8")) == CHECKSUMS["merges.txt"]
    vocab = vocab_from_merges(merges)
    assert len(vocab) == 49408
    assert sha256(render_vocab(vocab).encode("utf-8")) == CHECKSUMS["vocab.json"]


def test_known_ids(ours):
    assert ours.tokenize("a photo of a cat") == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert ours.encode("A Photo of a CAT") == [320, 1125, 539, 320, 2368]
    assert ours.tokenize("") == [49406, 49407]
    assert ours.vocab["<|startoftext|>"] == 49406 and ours.vocab["<|endoftext|>"] == 49407


def test_bpe_cache_belongs_to_the_instance(ours):
    other = load_tokenizer()
    other.encode("unmistakably")
    assert "unmistakably" not in "".join(ours._cache)
    assert other.encode("unmistakably") == ours.encode("unmistakably")


def test_missing_files_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        ClipTokenizer.from_dir(tmp_path)


TRICKY = [
    "", " ", "\n\n", "A" * 300, "Hello, World! It's 2026.", "masterpiece, best quality, 8k uhd",
    "ΑΣ ΟΔΟΣ", "İstanbul", "naïve café über", "e\u0301", "日本語のテキスト", "🙂🙂 👍🏽", "ＡＢＣ",
    "x<|endoftext|>y", "don't you'll we've I'M THEY'RE it'S", "3.14159 1,000,000 ①②",
    "&amp; &lt;tag&gt;", "a\u200bb\u2028c\u00a0d\x1ce\x85f", "(red:1.2), [blue], {green}",
    "hello!!! ??? ... --- ___ ~~~", "greg rutkowski, artstation, trending", "tab\tseparated\twords",
]
WORDS = ["a", "photo", "of", "cat", "masterpiece", "best quality", "8k", "ultra-detailed", "don't",
         "it's", "(red:1.2)", "portrait,", "café", "naïve", "über", "日本", "🙂", "42", "3.14",
         "&amp;", "hello!!", "WORLD", "x_y", "foo-bar", "...", "  ", "\n", "tab\t", "greg rutkowski",
         "d'oh", "you'll", "we've", "i'm", "they're", "Σίσυφος", "straße", "ÆØÅ", "\\(x\\)"]


def random_prompts(count: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(count):
        yield " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 40)))


def test_matches_transformers_on_tricky_and_random_prompts(ours, reference):
    for prompt in TRICKY + list(random_prompts(200)):
        assert ours.encode(prompt) == reference(prompt, add_special_tokens=False)["input_ids"], repr(prompt)


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cn"]), max_size=30))
def test_matches_transformers_on_any_text(ours, reference, text):
    """Any assigned character. (Code points that Python's Unicode tables leave unassigned are
    left out: the regex module and the Rust tokenizer disagree on them by Unicode version.)"""
    assert ours.encode(text) == reference(text, add_special_tokens=False)["input_ids"]


# ComfyUI's emphasis rules (the examples in ComfyUI's sd1_clip.token_weights documentation)
@pytest.mark.parametrize("prompt, expected", [
    ("(foo)", [("foo", 1.1)]),
    ("(foo)(bar)", [("foo", 1.1), ("bar", 1.1)]),
    ("(foo:2.0)", [("foo", 2.0)]),
    ("((foo))", [("foo", 1.21)]),
    ("((foo):1.1)", [("foo", 1.21)]),
    ("((foo:1.1))", [("foo", 1.1)]),
    ("(foo:0.0)", [("foo", 0.0)]),
    ("((foo:1.0):0.0)", [("foo", 1.0)]),
    ("foo ((((lol (cat:666) attack:100)))) baz",
     [("foo ", 1.0), ("lol ", 100.0), ("cat", 666.0), (" attack", 100.0), (" baz", 1.0)]),
    ("foo ((((lol (cat:666) attack):100))) baz",
     [("foo ", 1.0), ("lol ", 110.0), ("cat", 666.0), (" attack", 110.0), (" baz", 1.0)]),
    ("a (red:1.5) cat", [("a ", 1.0), ("red", 1.5), (" cat", 1.0)]),
    (r"\(literal\) (x:0.5)", [("(literal) ", 1.0), ("x", 0.5)]),
    ("(time: 12:30)", [("time: 12", 30.0)]),
    ("(ratio:wide)", [("ratio:wide", 1.1)]),
    ("(:2)", [(":2", 1.1)]),
    ("[blue]", [("[blue]", 1.0)]),
    ("unclosed (paren", [("unclosed ", 1.0), ("(paren", 1.0)]),
    ("a) (b)", [("a) (b)", 1.0)]),
    ("(a (b)", [("a ", 1.1), ("(b", 1.1)]),
])
def test_weights_parse_like_comfyui(prompt, expected):
    parsed = parse_weights(prompt)
    assert [text for text, _ in parsed] == [text for text, _ in expected]
    assert [w for _, w in parsed] == pytest.approx([w for _, w in expected])


def test_weighted_tokens_follow_the_segments(ours):
    assert weighted_tokens(ours, "a (red:1.5) cat") == [(320, 1.0), (RED, 1.5), (CAT, 1.0)]


def test_embeddings_without_a_lookup_are_refused_clearly(ours):
    with pytest.raises(PromptError, match="embedding:easynegative: textual-inversion embeddings cannot be used"):
        prompt_windows(ours, "a cat, embedding:easynegative")
    assert weighted_tokens(ours, "no_embedding:here")  # not an embedding reference: text


def tokens_of(window):
    return [token for token, _ in window]


def test_empty_prompt_is_one_window_padded_with_end(ours):
    [window] = prompt_windows(ours, "")
    assert tokens_of(window) == [49406] + [49407] * 76
    assert all(weight == 1.0 for _, weight in window)


def test_75_tokens_fit_one_window_and_76_take_two(ours):
    [window] = prompt_windows(ours, "cat " * 75)
    assert tokens_of(window) == [49406] + [CAT] * 75 + [49407]
    first, second = prompt_windows(ours, "cat " * 76)
    assert tokens_of(first) == [49406] + [CAT] * 75 + [49407]
    assert tokens_of(second) == [49406, CAT, 49407] + [49407] * 74


def test_long_prompt_is_cut_every_75_tokens(ours):
    first, second = prompt_windows(ours, "cat " * 100)
    assert tokens_of(first) == [49406] + [CAT] * 75 + [49407]
    assert tokens_of(second) == [49406] + [CAT] * 25 + [49407] * 51
    assert chunks(weighted_tokens(ours, "cat " * 100)) == [first, second]


def test_words_are_the_groups_that_fill_windows(ours):
    """ComfyUI packs word by word: 72 + 5 one-token words -> 3 end window 1, 2 start window 2."""
    first, second = prompt_windows(ours, "cat " * 72 + "(red red red red red:1.2)")
    assert first[73:] == [(RED, 1.2)] * 3 + [(49407, 1.0)]
    assert second[:4] == [(49406, 1.0)] + [(RED, 1.2)] * 2 + [(49407, 1.0)]


def test_short_word_moves_whole_to_the_next_window(ours):
    word = "supercalifragilistic"  # 5 tokens: under 8, kept together
    tokens = ours.encode(word)
    assert len(tokens) == 5
    first, second = prompt_windows(ours, "cat " * 72 + word)
    assert tokens_of(first) == [49406] + [CAT] * 72 + [49407] * 4
    assert tokens_of(second)[:7] == [49406, *tokens, 49407]


def test_long_word_is_cut_at_the_window_end(ours):
    word = "qwertyuiopasdfghjklzxcvbnm"
    tokens = ours.encode(word)
    assert len(tokens) >= 8
    first, second = prompt_windows(ours, "cat " * 72 + word)
    assert tokens_of(first)[73:] == tokens[:3] + [49407]
    assert tokens_of(second)[:len(tokens) - 2] == [49406, *tokens[3:]]
